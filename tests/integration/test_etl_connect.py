"""The day batch through a real Spark Connect server (SPARK_REMOTE) against the in-process batch:
the same lake files and warehouse rows, bit for bit; `airflow dags test` of one day through the
server; an unreachable server as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from binance_etl.db import connect
from binance_etl.localpg import free_port
from binance_etl.settings import load_settings
from etl.dagrules import DAG_ID
from etl.main import main, run_day
from etl.utils import TABLES
from tests.plugins.airflow import (
    REPO,
    SYMBOLS,
    AirflowCli,
    expected_facts,
    insert_day,
    insert_sentinels,
    project_env,
    warehouse_facts,
)

pytestmark = pytest.mark.integration

DAY = date(2025, 3, 12)  # days no other test of the session writes
DAGS_TEST_DAY = date(2025, 2, 11)


def lake_snapshot(lake: Path, day: date) -> dict[str, tuple[Any, bytes]]:
    """Per table: the day's partition as an Arrow table (schema included) and its file bytes."""
    snapshot = {}
    for table in TABLES:
        folder = lake / table / f"year={day:%Y}/month={day:%m}/day={day:%d}"
        files = sorted(folder.glob("*.parquet"))
        assert len(files) == 1, (table, files)
        snapshot[table] = (pq.read_table(files[0]), files[0].read_bytes())
    return snapshot


def warehouse_snapshot(pg_url: str, day: date) -> dict[str, list[tuple[Any, ...]]]:
    with connect(pg_url, autocommit=True) as conn:
        return {
            "fact_trades": conn.execute(
                "SELECT * FROM warehouse.fact_trades WHERE trade_date = %s"
                " ORDER BY symbol, trade_minute", (day,)).fetchall(),
            "dim_time": conn.execute(
                "SELECT * FROM warehouse.dim_time WHERE datetime::date = %s ORDER BY datetime",
                (day,)).fetchall(),
            "dim_symbol": conn.execute(
                "SELECT * FROM warehouse.dim_symbol ORDER BY symbol").fetchall(),
        }


def complete_raw_day(pg_url: str, day: date, per_symbol: int) -> list[tuple[Any, ...]]:
    """Generated trades for `day` plus the sentinels after it; PostgreSQL's expected facts."""
    with connect(pg_url, autocommit=True) as conn:
        insert_sentinels(conn, day, insert_day(conn, day, per_symbol=per_symbol))
        return expected_facts(conn, day)


def test_day_batch_through_spark_connect_equals_the_in_process_batch(
    spark: object, spark_connect: str, pg_url: str, tmp_path: Path
) -> None:
    expected = complete_raw_day(pg_url, DAY, per_symbol=3000)

    # In process: the session fixture's JVM, as the other integration tests run the batch.
    local_lake = tmp_path / "lake-in-process"
    settings = load_settings(database_url=pg_url, lake_uri=str(local_lake),
                             symbols=list(SYMBOLS), spark_master="local[2]", spark_remote=None)
    run_day(DAY, settings)
    in_process_lake = lake_snapshot(local_lake, DAY)
    in_process_rows = warehouse_snapshot(pg_url, DAY)
    with connect(pg_url, autocommit=True) as conn:
        assert warehouse_facts(conn, DAY) == expected

    # Through the server: the command line in a process of its own, as a user or a task runs it
    # (a Spark Connect client and a JVM session cannot share one Python process).
    remote_lake = tmp_path / "lake-connect"
    env = project_env(pg_url, remote_lake, SPARK_REMOTE=spark_connect)
    result = subprocess.run(
        [sys.executable, "-m", "etl.main", "--date", DAY.isoformat()],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"spark connect session on {spark_connect}" in result.stderr
    connect_lake = lake_snapshot(remote_lake, DAY)
    for table in TABLES:
        local_table, local_bytes = in_process_lake[table]
        remote_table, remote_bytes = connect_lake[table]
        assert remote_table.schema == local_table.schema, table
        assert remote_table.equals(local_table), table
        assert remote_bytes == local_bytes, table
    assert in_process_lake["fact_trades"][0].num_rows == len(expected)
    assert warehouse_snapshot(pg_url, DAY) == in_process_rows


def test_dags_test_of_one_day_through_spark_connect(
    airflow_sqlite_env: AirflowCli, spark_connect: str, pg_url: str, tmp_path: Path
) -> None:
    expected = complete_raw_day(pg_url, DAGS_TEST_DAY, per_symbol=300)
    lake = tmp_path / "lake"
    cli = AirflowCli(airflow_sqlite_env.setup,
                     {**airflow_sqlite_env.env, "SPARK_REMOTE": spark_connect,
                      "LAKE_URI": str(lake)}, lake)
    output = cli.run("dags", "test", DAG_ID, "--conf",
                     json.dumps({"date": DAGS_TEST_DAY.isoformat()}), timeout=420)
    assert "state=success" in output, output[-3000:]
    assert f"spark connect session on {spark_connect}" in output
    assert "spark session on local" not in output  # no JVM in the task's process
    with connect(pg_url, autocommit=True) as conn:
        assert warehouse_facts(conn, DAGS_TEST_DAY) == expected
    assert (lake / "fact_trades" / f"year={DAGS_TEST_DAY:%Y}/month={DAGS_TEST_DAY:%m}"
            f"/day={DAGS_TEST_DAY:%d}").is_dir()


def test_an_unreachable_spark_connect_server_is_one_line(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SPARK_REMOTE", f"sc://127.0.0.1:{port}")
    assert main(["--date", "2025-03-13"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: spark connect server sc://127.0.0.1:{port} is unreachable: Connection refused"
        " (start one with `python -m etl.connect_server start`)"
    ]


def test_unreachable_server_fails_the_airflow_task_for_its_normal_retries(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The task raises the one-line error as an ordinary failure (Airflow retries it: the
    server may be restarting), never AirflowFailException, which would skip the retries."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # not the user's ~/airflow
    monkeypatch.setenv("AIRFLOW_CONFIG", str(REPO / "airflow.cfg"))
    port = free_port()
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SPARK_REMOTE", f"sc://127.0.0.1:{port}")
    from airflow.sdk.exceptions import AirflowFailException

    import dags.etl_dags as module
    from etl.spark import SparkConnectUnreachable

    dag = module.daily_binance_etl()
    task: Any = dag.get_task("run_etl_pipeline")  # a @task: its callable is the function
    run_time = datetime(2025, 3, 14, 4, tzinfo=UTC)
    context = {"dag_run": SimpleNamespace(conf={}, run_after=run_time,
                                          data_interval_end=run_time),
               "params": {"date": None, "allow_empty": False}}
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    with pytest.raises(SparkConnectUnreachable) as caught:
        task.python_callable()
    assert not isinstance(caught.value, AirflowFailException)
    assert str(caught.value).startswith(f"spark connect server sc://127.0.0.1:{port} is unreach")
    assert task.retries == module.RETRIES > 0
