import pytest

from binance_etl.settings import SettingsError, load_settings, parse_symbols


def test_symbols_any_case_deduplicated():
    assert parse_symbols("btcusdt, ETHUSDT,btcUSDT,") == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize("bad", ["", " , ", "btc usdt", "BTC/USDT"])
def test_bad_symbols_rejected(bad):
    with pytest.raises(ValueError, match=r"symbol"):
        parse_symbols(bad)


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("SYMBOLS", "DATABASE_URL", "LAKE_URI", "SPARK_MASTER", "WAREHOUSE_URL",
                 "SPARK_REMOTE", "LIVE_CHECKPOINT_URI", "LIVE_TRIGGER_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.spark_remote is None
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.binance_ws_url == "wss://stream.binance.com:9443"
    assert settings.lake_uri == "./data/lake"
    assert settings.database_url is None
    assert not settings.warehouse_is_redshift
    assert settings.live_checkpoint_uri == ".local/live/checkpoint"
    assert settings.live_trigger_seconds == 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYMBOLS", "btc usdt"),
        ("BINANCE_WS_URL", "http://example"),
        ("LAKE_URI", "ftp://x/y"),
        ("SPARK_MASTER", "yarn"),
        ("SPARK_REMOTE", "spark://127.0.0.1:7077"),
        ("SPARK_REMOTE", "sc://127.0.0.1:port"),
        ("DATABASE_URL", "mysql://x"),
        ("BATCH_MAX_TRADES", "lots"),
        ("EXCHANGE_CHECK", "sometimes"),
        ("AIRFLOW_WAREHOUSE", "redshift"),
        ("AIRFLOW_REDSHIFT_CONN_ID", ""),
        ("AIRFLOW_AWS_CONN_ID", "aws default"),
        ("LIVE_CHECKPOINT_URI", "http://x/y"),
        ("LIVE_TRIGGER_SECONDS", "0"),
    ],
)
def test_bad_setting_is_one_line_naming_it(monkeypatch, tmp_path, name, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value.code)
    assert name in message
    assert "\n" not in message


def test_env_file_is_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYMBOLS", raising=False)
    (tmp_path / ".env").write_text("SYMBOLS=solusdt\nREDSHIFT_IAM_ROLE=arn:aws:iam::1:role/x\n")
    settings = load_settings()
    assert settings.symbols == ["SOLUSDT"]
    assert settings.redshift_iam_role == "arn:aws:iam::1:role/x"


def test_airflow_connection_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("AIRFLOW_AWS_CONN_ID", "AIRFLOW_REDSHIFT_CONN_ID", "AIRFLOW_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.airflow_aws_conn_id, settings.airflow_redshift_conn_id,
            settings.airflow_warehouse) == ("aws_default", "redshift_default", "settings")
    monkeypatch.setenv("AIRFLOW_AWS_CONN_ID", "")  # the provider's "no connection"
    monkeypatch.setenv("AIRFLOW_REDSHIFT_CONN_ID", "warehouse.prod-1")
    monkeypatch.setenv("AIRFLOW_WAREHOUSE", "redshift-data-api")
    settings = load_settings()
    assert (settings.airflow_aws_conn_id, settings.airflow_redshift_conn_id,
            settings.airflow_warehouse) == ("", "warehouse.prod-1", "redshift-data-api")


@pytest.mark.parametrize(
    "value", ["sc://127.0.0.1:15002", "sc://spark-connect:15002/;use_ssl=true;token=x"]
)
def test_spark_remote_accepts_spark_connect_urls(monkeypatch, tmp_path, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPARK_REMOTE", value)
    assert load_settings().spark_remote == value
