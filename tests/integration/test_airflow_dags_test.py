"""`airflow dags test daily_binance_etl` end to end: raw trades in PostgreSQL -> Spark -> the
Parquet lake -> the warehouse, run by Airflow's own CLI (SQLite metadata, no other process)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from binance_etl.db import connect
from etl.dagrules import DAG_ID
from tests.plugins.airflow import (
    REPO,
    SYMBOLS,
    AirflowCli,
    expected_facts,
    insert_day,
    insert_sentinels,
    lake_partitions,
    warehouse_counts,
    warehouse_facts,
)

pytestmark = pytest.mark.integration

DAY = date(2025, 2, 3)  # a day no other test of the session writes
INCOMPLETE_DAY = date(2025, 2, 20)


def _task_states(cli: AirflowCli) -> dict[str, str]:
    database = cli.setup.sql_alchemy_conn.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT ti.task_id, ti.state FROM task_instance ti JOIN dag_run dr"
            " ON dr.run_id = ti.run_id AND dr.dag_id = ti.dag_id"
            " WHERE ti.dag_id = ?",
            (DAG_ID,),
        ).fetchall()
    return dict(rows)


def test_dags_test_processes_a_manual_day_into_lake_and_warehouse(
    airflow_sqlite_env: AirflowCli, pg_url: str
):
    with connect(pg_url, autocommit=True) as conn:
        next_ids = insert_day(conn, DAY, per_symbol=300)
        insert_sentinels(conn, DAY, next_ids)  # the stream passed the day's end: complete

    started = time.monotonic()
    # No logical date: like a UI trigger, the day comes from the conf; the sensor really checks
    # raw_day_status against the test database.
    output = airflow_sqlite_env.run(
        "dags", "test", DAG_ID, "--conf", json.dumps({"date": DAY.isoformat()}), timeout=420
    )
    elapsed = time.monotonic() - started
    print(f"airflow dags test: {elapsed:.1f}s")
    assert "state=success" in output, output[-3000:]
    assert f"complete=True: {DAY} complete" in output

    assert _task_states(airflow_sqlite_env) == {
        "wait_for_raw_day": "success", "run_etl_pipeline": "success", "quality_gate": "success",
        "publish_lake": "success", "load_warehouse": "success",
    }
    partition = f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}"
    for table in ("fact_trades", "dim_time", "dim_symbol"):
        assert partition in lake_partitions(airflow_sqlite_env.lake, table), table
    with connect(pg_url, autocommit=True) as conn:
        expected = expected_facts(conn, DAY)
        assert len(expected) > 100  # many distinct minutes per symbol
        assert warehouse_facts(conn, DAY) == expected
        counts = warehouse_counts(conn, DAY)
        symbols = {row[0] for row in conn.execute("SELECT symbol FROM warehouse.dim_symbol")}
    assert counts["dim_time"] == 24 * 60
    assert counts["fact_trades"] == len(expected)
    assert set(SYMBOLS) <= symbols


def test_raw_day_sensor_times_out_with_a_clear_message(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """The sensor asks the real `raw_day_status`; the day has trades but the stream never
    passed its end, so it times out naming the day, the reason and the way out."""
    # In case this process imports Airflow first: not the user's ~/airflow.
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(REPO / "airflow.cfg"))
    from airflow.sdk.exceptions import AirflowSensorTimeout

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("AIRFLOW_WAIT_FOR_RAW_DAY", "true")
    with connect(pg_url, autocommit=True) as conn:
        insert_day(conn, INCOMPLETE_DAY, per_symbol=20)
    from dags.etl_dags import RawDaySensor

    sensor = RawDaySensor(task_id="wait_for_raw_day_probe", mode="poke", poke_interval=0.1,
                          timeout=0)
    run_time = datetime(2025, 2, 21, 4, tzinfo=UTC)
    context = {
        "dag_run": SimpleNamespace(data_interval_end=run_time, run_after=run_time, conf={}),
        "params": {"wait_for_raw_day": True},
    }
    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor.execute(context)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"raw trades of {INCOMPLETE_DAY} still incomplete" in message
    assert "no trade stored after the day's end" in message
    assert '"wait_for_raw_day": false' in message
