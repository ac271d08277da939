"""The Spark Connect server's command line and the client's one-line error, without a server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from binance_etl.localpg import free_port
from binance_etl.settings import load_settings
from etl import connect_server
from etl.spark import SQL_CONF, SparkConnectUnreachable, check_remote, shown_remote


def test_server_gets_the_batch_settings_the_driver_and_the_interpreter() -> None:
    settings = load_settings(spark_master="local[2]")
    args = connect_server.server_args(settings, "127.0.0.1", 15999)
    assert args[:2] == ["--master", "local[2]"]
    conf = dict(item.split("=", 1) for item in args[3::2])
    assert conf["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert conf["spark.connect.grpc.binding.port"] == "15999"
    assert conf["spark.jars.packages"].startswith("org.postgresql:postgresql:")
    assert conf["spark.sql.decimalOperations.allowPrecisionLoss"] == "false"
    assert {key: conf[key] for key in SQL_CONF} == SQL_CONF
    assert conf["spark.pyspark.python"] == sys.executable


def test_server_env_drops_client_variables(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:1")
    env = connect_server.server_env(tmp_path, load_settings(spark_master="local[2]"),
                                    "127.0.0.1")
    assert "SPARK_REMOTE" not in env
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert env["SPARK_PID_DIR"] == str(tmp_path)


def test_unreachable_server_is_one_line_without_parameters() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(SparkConnectUnreachable) as caught:
        check_remote(f"sc://127.0.0.1:{port}/;token=secret", timeout=2)
    message = str(caught.value)
    assert message.startswith(f"spark connect server sc://127.0.0.1:{port} is unreachable: ")
    assert "secret" not in message
    assert "\n" not in message
    assert shown_remote("sc://h:1/;token=t") == "sc://h:1"


def test_status_and_url_without_a_server(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert connect_server.main(["status", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == "spark connect server: not running"
    assert connect_server.main(["url", "--dir", str(tmp_path)]) == 1
    assert connect_server.main(["stop", "--dir", str(tmp_path)]) == 0
