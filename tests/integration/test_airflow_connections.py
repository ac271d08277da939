"""The lake and the warehouse reached through Airflow connections (`AIRFLOW_CONN_*` JSON in the
environment) and the amazon provider's hooks, against moto's server: S3 through `S3Hook`, the
Redshift Data API through `RedshiftDataHook` (see tests/plugins/redshift_data.py for what moto
lacks and the plugin adds). Also the DB-API runner's one transaction on PostgreSQL."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import date
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from binance_etl.db import connect
from binance_etl.settings import Settings, load_settings
from etl.load import DbApiRunner
from etl.pipeline import Clients, lake_for, load_warehouse
from etl.redshift import redshift_day_steps
from etl.transform import build_dim_symbol, build_dim_time
from etl.utils import TABLES
from tests.plugins.airflow import REPO
from tests.plugins.redshift_data import RedshiftDataServer

pytestmark = pytest.mark.integration

DAY = date(2025, 3, 4)
ROLE = "arn:aws:iam::123456789012:role/redshift-copy"
SECRET = f"conn-secret-{secrets.token_hex(8)}"


def aws_connection(endpoint: str, password: str = SECRET) -> str:
    return json.dumps({"conn_type": "aws", "login": "AKIATESTCONNECTION", "password": password,
                       "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}})


def redshift_connection(**extra: object) -> str:
    return json.dumps({"conn_type": "redshift", "schema": "analytics", "login": "etl_loader",
                       "password": SECRET, "extra": extra or {"cluster_identifier": "trades"}})


@pytest.fixture
def airflow_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process as a task would see it: Airflow importable (not the user's ~/airflow), no
    AWS credentials but the connections', no project settings from the shell."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(REPO / "airflow.cfg"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "S3_ENDPOINT_URL", "WAREHOUSE_URL", "LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _conn_ids() -> tuple[str, str]:
    """Fresh ids per test: Airflow may cache a connection by id within a process."""
    suffix = uuid.uuid4().hex[:8]
    return f"aws_{suffix}", f"redshift_{suffix}"


def _settings(bucket: str, aws_id: str, redshift_id: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "lake_uri": f"s3://{bucket}/lake", "airflow_aws_conn_id": aws_id,
        "airflow_redshift_conn_id": redshift_id, "airflow_warehouse": "redshift-data-api",
        "redshift_iam_role": ROLE, "symbols": ["BTCUSDT", "ETHUSDT"],
    }
    values.update(extra)
    return load_settings(**values)


def _publish_day(settings: Settings, clients: Clients) -> None:
    """A published day in the lake, written through the connection's S3 client."""
    lake = lake_for(settings, clients)
    facts = pa.table({"symbol": ["BTCUSDT"], "trade_date": [DAY]})  # content is not COPYed here
    lake.stage(DAY, {"dim_time": build_dim_time(DAY),
                     "dim_symbol": build_dim_symbol(["BTCUSDT", "ETHUSDT"]),
                     "fact_trades": facts})
    lake.write_staged_report(DAY, {"passed": True, "checks": [], "rows_read": 1})
    lake.publish(DAY, TABLES)


def _setup(monkeypatch: pytest.MonkeyPatch, endpoint: str, **settings_extra: object
           ) -> tuple[Settings, Clients, str]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from etl.airflow_connections import clients_from_connections

    aws_id, redshift_id = _conn_ids()
    monkeypatch.setenv(f"AIRFLOW_CONN_{aws_id.upper()}", aws_connection(endpoint))
    monkeypatch.setenv(f"AIRFLOW_CONN_{redshift_id.upper()}", redshift_connection())
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    S3Hook(aws_conn_id=aws_id).create_bucket(bucket_name=bucket)
    settings = _settings(bucket, aws_id, redshift_id, **settings_extra)
    clients = clients_from_connections(settings)
    _publish_day(settings, clients)
    return settings, clients, bucket


def test_lake_on_s3hook_and_warehouse_on_the_data_api(
    airflow_process: None, redshift_data: RedshiftDataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, clients, bucket = _setup(monkeypatch, redshift_data.endpoint)
    before = len(redshift_data.batches())

    result = load_warehouse(DAY, settings, clients=clients)

    # The lake's objects are on the moto server that only the connection names.
    s3 = boto3.client("s3", endpoint_url=redshift_data.endpoint, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    folders = {key.rsplit("/", 1)[0] for key in keys}
    assert {f"lake/{table}/year=2025/month=03/day=04" for table in TABLES} <= folders
    # One batch, the day's statements in order, on the target the connection names.
    batches = redshift_data.batches()[before:]
    assert len(batches) == 1
    batch = batches[0]
    partitions = {t: f"s3://{bucket}/lake/{t}/year=2025/month=03/day=04/" for t in TABLES}
    expected = [step.sql for step in redshift_day_steps("warehouse", DAY, partitions, ROLE)]
    assert batch.sqls == expected
    assert expected[-2:] == [
        "DELETE FROM warehouse.fact_trades WHERE trade_date = '2025-03-04'",
        f"COPY warehouse.fact_trades FROM '{partitions['fact_trades']}' IAM_ROLE '{ROLE}' "
        "FORMAT AS PARQUET",
    ]
    assert (batch.database, batch.cluster_identifier, batch.db_user, batch.secret_arn) == (
        "analytics", "trades", "etl_loader", None)
    # Read back through the Data API itself, by the id the task returns (its XCom).
    assert result["statement_id"] == batch.id
    client = boto3.client("redshift-data", endpoint_url=redshift_data.endpoint,
                          region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    described = client.describe_statement(Id=result["statement_id"])
    assert described["Status"] == "FINISHED"
    assert [sub["QueryString"] for sub in described["SubStatements"]] == expected
    assert result["backend"] == "redshift"
    assert result["via"] == "data-api"
    assert set(result["tables"]) == set(TABLES)
    assert SECRET not in json.dumps(result)


def test_failed_statement_fails_the_load_naming_it(
    airflow_process: None, redshift_data: RedshiftDataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.redshift_data import WarehouseStatementError

    settings, clients, _ = _setup(monkeypatch, redshift_data.endpoint)
    redshift_data.fail_when("COPY warehouse.fact_trades",
                            "ERROR: Spectrum Scan Error: S3 access denied")

    with pytest.raises(WarehouseStatementError) as caught:
        load_warehouse(DAY, settings, clients=clients)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Redshift Data API statement 17 of 17 FAILED "
                               "(COPY warehouse.fact_trades FROM 's3://")
    assert "ERROR: Spectrum Scan Error: S3 access denied; the day's load was rolled back" in message
    assert redshift_data.batches()[-1].status == "FAILED"


def test_the_workgroup_and_secret_come_from_the_connection(
    airflow_process: None, redshift_data: RedshiftDataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redshift Serverless: the workgroup, a Secrets Manager secret, no database user."""
    settings, clients, _ = _setup(monkeypatch, redshift_data.endpoint)
    redshift_id = settings.airflow_redshift_conn_id
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etl-AbCdEf"
    monkeypatch.setenv(f"AIRFLOW_CONN_{redshift_id.upper()}", redshift_connection(
        serverless_work_group="analytics-wg", secret_arn=arn))
    from etl.airflow_connections import clients_from_connections

    load_warehouse(DAY, settings, clients=clients_from_connections(settings))
    batch = redshift_data.batches()[-1]
    assert (batch.workgroup_name, batch.cluster_identifier, batch.secret_arn, batch.db_user) == (
        "analytics-wg", None, arn, None)


@pytest.mark.parametrize(
    ("aws", "redshift", "message"),
    [
        (None, "ok", "AIRFLOW_AWS_CONN_ID: Airflow connection '{aws}' is not defined"),
        ('{"conn_type": "aws", "login": ', "ok",
         "AIRFLOW_AWS_CONN_ID: Airflow connection '{aws}' is not defined (or its definition "
         "cannot be parsed)"),
        (json.dumps({"conn_type": "postgres", "password": SECRET}), "ok",
         "AIRFLOW_AWS_CONN_ID: Airflow connection '{aws}' has type 'postgres'; expected 'aws'"),
        (json.dumps({"conn_type": "aws", "password": SECRET, "extra": f"{{{SECRET}"}), "ok",
         "AIRFLOW_AWS_CONN_ID: Airflow connection '{aws}': its extra is not a JSON object"),
        ("ok", None, "AIRFLOW_REDSHIFT_CONN_ID: Airflow connection '{redshift}' is not defined"),
        ("ok", json.dumps({"conn_type": "redshift", "login": "etl", "password": SECRET}),
         "AIRFLOW_REDSHIFT_CONN_ID: Airflow connection '{redshift}': no database"),
        ("ok", json.dumps({"conn_type": "redshift", "schema": "dev", "password": SECRET}),
         "AIRFLOW_REDSHIFT_CONN_ID: Airflow connection '{redshift}': no cluster or workgroup"),
    ],
    ids=["aws-missing", "aws-not-json", "aws-wrong-type", "aws-extra-not-object",
         "redshift-missing", "redshift-no-database", "redshift-no-cluster"],
)
def test_missing_or_malformed_connection_is_one_line_naming_it(
    airflow_process: None, monkeypatch: pytest.MonkeyPatch, s3_server: str,
    aws: str | None, redshift: str | None, message: str,
) -> None:
    from etl.airflow_connections import ConnectionSetupError, clients_from_connections

    aws_id, redshift_id = _conn_ids()
    if aws is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{aws_id.upper()}",
                           aws_connection(s3_server) if aws == "ok" else aws)
    if redshift is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{redshift_id.upper()}",
                           redshift_connection() if redshift == "ok" else redshift)
    settings = _settings("any-bucket", aws_id, redshift_id)

    with pytest.raises(ConnectionSetupError) as caught:
        clients_from_connections(settings)

    line = str(caught.value.code)
    expected = "configuration error: " + message.format(aws=aws_id, redshift=redshift_id)
    assert line.startswith(expected), line
    assert "\n" not in line
    assert SECRET not in line


def test_local_lake_and_postgres_warehouse_need_no_connection(airflow_process: None) -> None:
    from etl.airflow_connections import clients_from_connections

    settings = load_settings(lake_uri="./data/lake", airflow_aws_conn_id="not_defined_anywhere")
    assert clients_from_connections(settings) == Clients()


def test_dbapi_runner_is_one_transaction(pg_url: str) -> None:
    """The runner of WAREHOUSE_URL=redshift:// on a real DB-API connection (PostgreSQL's): the
    statements run in order and commit together; a failing one rolls all of them back."""
    table = f"runner_{uuid.uuid4().hex[:8]}"
    with connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (n integer)")
    runner = DbApiRunner(lambda: connect(pg_url))

    done = runner.run([f"INSERT INTO {table} VALUES (1), (2)", f"DELETE FROM {table} WHERE n = 1",
                       f"INSERT INTO {table} SELECT n + 10 FROM {table}"])
    assert done.rows == [2, 1, 1]
    with pytest.raises(Exception, match="division by zero"):
        runner.run([f"DELETE FROM {table}", f"INSERT INTO {table} VALUES (1 / 0)"])
    with connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT n FROM {table} ORDER BY n").fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert rows == [(2,), (12,)]


def test_redshift_sql_mode_checks_its_connection_type(
    airflow_process: None, monkeypatch: pytest.MonkeyPatch, s3_server: str
) -> None:
    """RedshiftSQLHook's connection must be of type `redshift` too; a right one gives the
    provider's hook on the configured ids."""
    from etl.airflow_connections import (
        ConnectionSetupError,
        SqlHookRunner,
        clients_from_connections,
    )

    aws_id, redshift_id = _conn_ids()
    monkeypatch.setenv(f"AIRFLOW_CONN_{aws_id.upper()}", aws_connection(s3_server))
    monkeypatch.setenv(f"AIRFLOW_CONN_{redshift_id.upper()}", aws_connection(s3_server))
    settings = _settings("any-bucket", aws_id, redshift_id, airflow_warehouse="redshift-sql")
    with pytest.raises(ConnectionSetupError, match=f"'{redshift_id}' has type 'aws'; expected "
                                                   "'redshift'"):
        clients_from_connections(settings)

    monkeypatch.setenv(f"AIRFLOW_CONN_{redshift_id.upper()}", redshift_connection(iam=True))
    runner = clients_from_connections(settings).redshift
    assert isinstance(runner, SqlHookRunner)
    assert (runner.hook.redshift_conn_id, runner.hook.aws_conn_id) == (redshift_id, aws_id)
