"""A range of days through Airflow's own backfill: `airflow backfill create` against a running
api-server, scheduler and dag-processor (LocalExecutor, PostgreSQL metadata). Each day ends up
as one lake partition and one set of warehouse rows; running the backfill again (reprocessing
the completed runs) changes nothing."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import pytest

from binance_etl.db import connect
from etl.dagrules import DAG_ID, backfill_window, scheduled_run_time
from scripts.stack import wait_until
from tests.plugins.airflow import (
    AirflowServices,
    expected_facts,
    insert_day,
    insert_sentinels,
    lake_partitions,
    lake_snapshot,
    warehouse_counts,
    warehouse_facts,
)

pytestmark = pytest.mark.integration

FIRST, LAST = date(2025, 2, 10), date(2025, 2, 11)
DAYS = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]
TABLES = ("fact_trades", "dim_time", "dim_symbol")


def _backfill(services: AirflowServices, *extra: str, wait_completed: bool = True) -> int:
    """Create a backfill for DAYS and wait until its runs are done; its id.

    `wait_completed`: also wait until the scheduler marks the backfill complete (it checks every
    30 s), which a next backfill of the same DAG needs."""
    window = backfill_window(FIRST, LAST)
    services.cli.run("backfill", "create", "--dag-id", DAG_ID, *window.cli_args(),
                     "--max-active-runs", "1", *extra, timeout=120)
    with connect(services.metadata_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(id) FROM backfill WHERE dag_id = %s", (DAG_ID,)
        ).fetchone()
        assert row is not None
        assert row[0] is not None
        backfill_id = int(row[0])

        def finished() -> list[tuple[Any, ...]] | None:
            runs = conn.execute(
                "SELECT dr.logical_date, dr.state FROM dag_run dr"
                " JOIN backfill_dag_run b ON b.dag_run_id = dr.id"
                " WHERE b.backfill_id = %s ORDER BY dr.logical_date",
                (backfill_id,),
            ).fetchall()
            if any(state == "failed" for _, state in runs):
                return runs  # stop waiting; the assertion below shows which
            done = conn.execute(
                "SELECT completed_at IS NOT NULL FROM backfill WHERE id = %s", (backfill_id,)
            ).fetchone()
            all_done = bool(runs) and all(state == "success" for _, state in runs)
            if wait_completed:
                all_done = all_done and bool(done and done[0])
            return runs if all_done else None

        runs = wait_until(finished, f"backfill {backfill_id} to finish", 400)
    assert [(when, state) for when, state in runs] == [
        (scheduled_run_time(day), "success") for day in DAYS
    ], _task_failures(services)
    return backfill_id


def _task_failures(services: AirflowServices) -> str:
    logs = sorted((services.cli.setup.home / "logs").glob("dag_id=*/run_id=*/task_id=*/*.log"))
    failed = [p for p in logs if '"level":"error"' in p.read_text(errors="replace")]
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in failed[:3])


def _state(services: AirflowServices, pg_url: str) -> dict[str, Any]:
    lake = services.cli.lake
    with connect(pg_url, autocommit=True) as conn:
        return {
            "partitions": {table: lake_partitions(lake, table) for table in TABLES},
            "lake": {(table, day): lake_snapshot(lake, table, day)
                     for table in TABLES for day in DAYS},
            "facts": {day: warehouse_facts(conn, day) for day in DAYS},
            "counts": {day: warehouse_counts(conn, day) for day in DAYS},
        }


def test_backfill_range_once_per_day_and_rerun_changes_nothing(
    airflow_services: AirflowServices, pg_url: str
):
    with connect(pg_url, autocommit=True) as conn:
        ids = None
        for n, day in enumerate(DAYS):
            ids = insert_day(conn, day, per_symbol=200, seed=n, first_ids=ids)
        assert ids is not None
        insert_sentinels(conn, LAST, ids)
        expected = {day: expected_facts(conn, day) for day in DAYS}

    with connect(services_url := airflow_services.metadata_url, autocommit=True) as conn:
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM serialized_dag WHERE dag_id = %s", (DAG_ID,)
            ).fetchone(),
            f"the dag-processor to parse {DAG_ID} ({services_url.rsplit('/', 1)[-1]})",
            120,
        )

    started = time.monotonic()
    first_id = _backfill(airflow_services)
    print(f"backfill of {len(DAYS)} days: {time.monotonic() - started:.1f}s")
    state = _state(airflow_services, pg_url)
    for day in DAYS:
        partition = f"year={day:%Y}/month={day:%m}/day={day:%d}"
        for table in TABLES:
            assert state["partitions"][table].count(partition) == 1
        assert state["facts"][day] == expected[day]
        assert state["counts"][day]["fact_trades"] == len(expected[day])
        assert state["counts"][day]["dim_time"] == 24 * 60
    assert all(state["lake"][("fact_trades", day)]["rows"] for day in DAYS)

    started = time.monotonic()
    second_id = _backfill(airflow_services, "--reprocess-behavior", "completed",
                          wait_completed=False)
    print(f"backfill again (reprocessing completed runs): {time.monotonic() - started:.1f}s")
    assert second_id != first_id
    with connect(airflow_services.metadata_url, autocommit=True) as conn:
        tries = conn.execute(
            "SELECT DISTINCT try_number FROM task_instance WHERE dag_id = %s", (DAG_ID,)
        ).fetchall()
    assert tries == [(2,)]  # every task of both days really ran again
    assert _state(airflow_services, pg_url) == state
