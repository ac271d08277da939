"""`daily_binance_etl` as Airflow sees it: import, structure, schedule, retries, the day rule.

The DAG file is parsed by Airflow's own DagBag; the scheduled, backfilled and manual runs' data
intervals come from the serialized DAG's timetable (what the scheduler uses), and the day rule is
applied to them. No database, no Airflow process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from etl.dagrules import backfill_window, scheduled_run_time, target_day, target_day_of_run

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_ID = "daily_binance_etl"
TASK_ORDER = ["wait_for_raw_day", "run_etl_pipeline", "quality_gate", "publish_lake",
              "load_warehouse"]


def _airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/unused.db",
        "AIRFLOW_START_DATE": "2024-06-01",
        "AIRFLOW_RAW_DAY_TIMEOUT_MINUTES": "90",
        "AIRFLOW_RAW_DAY_POKE_SECONDS": "120",
    }


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("airflow-unit")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _airflow_env(home).items():
            patch.setenv(key, value)
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag: Any) -> Any:
    assert dagbag.import_errors == {}
    return dagbag.dags[DAG_ID]


@pytest.fixture(scope="module")
def serialized(dag: Any) -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_dagbag_imports_the_dag_fast_without_work(tmp_path: Path):
    """A fresh interpreter parses the folder: no errors, quick, no Spark or ETL code loaded.

    DATABASE_URL points at a closed port: parsing must not try to connect anywhere.
    """
    probe = """
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dag_ids": sorted(bag.dag_ids),
    "airflow_import_s": imported - started,
    "parse_s": parsed - imported,
    "file_parse_s": sum(s.duration.total_seconds() for s in bag.dagbag_stats),
    "heavy_modules": sorted(m for m in ("pyspark", "etl.pipeline", "etl.extract", "boto3")
                            if m in sys.modules),
}))
"""
    env = dict(os.environ, **_airflow_env(tmp_path),
               DATABASE_URL="postgresql://nobody@127.0.0.1:9/none")
    result = subprocess.run([sys.executable, "-c", probe, str(DAGS)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"DagBag: airflow import {report['airflow_import_s']:.2f}s, "
          f"dags/ parsed in {report['parse_s']:.3f}s (file {report['file_parse_s']:.3f}s)")
    assert report["errors"] == {}
    assert report["dag_ids"] == [DAG_ID]
    assert report["heavy_modules"] == []
    # Airflow's own limit is dagbag_import_timeout (60 s here); a thin file parses in well
    # under a second even on a busy 2-core machine.
    assert report["file_parse_s"] < 3.0


def test_tasks_and_their_order(dag: Any):
    assert sorted(dag.task_ids) == sorted(TASK_ORDER)
    for upstream, downstream in zip(TASK_ORDER, TASK_ORDER[1:], strict=False):
        task = dag.get_task(downstream)
        assert task.upstream_task_ids == {upstream}, downstream
    assert dag.get_task(TASK_ORDER[0]).upstream_task_ids == set()
    assert dag.get_task(TASK_ORDER[-1]).downstream_task_ids == set()


def test_schedule_start_and_concurrency(dag: Any):
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 4 * * *"
    assert str(dag.timetable.timezone) in ("UTC", "Timezone('UTC')")
    assert dag.start_date == datetime(2024, 6, 1, tzinfo=UTC)  # from AIRFLOW_START_DATE
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.params.keys()) == {"date", "allow_empty", "wait_for_raw_day"}


def test_retries_with_exponential_backoff(dag: Any):
    for task_id in TASK_ORDER[1:]:
        task = dag.get_task(task_id)
        assert task.retries == 3, task_id
        assert task.retry_delay == timedelta(minutes=2)
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(minutes=30)
    assert dag.get_task("run_etl_pipeline").execution_timeout == timedelta(hours=3)


def test_raw_day_sensor_reschedules_and_times_out_from_settings(dag: Any):
    sensor = dag.get_task("wait_for_raw_day")
    assert sensor.mode == "reschedule"
    assert sensor.poke_interval == 120
    assert sensor.timeout == 90 * 60
    assert sensor.retries == 0


def _run(interval_end: datetime | None, run_after: datetime, conf: dict[str, Any] | None = None):
    return SimpleNamespace(data_interval_end=interval_end, run_after=run_after, conf=conf or {})


def test_scheduled_run_day_from_airflows_timetable(serialized: Any):
    from airflow.timetables.base import DataInterval, TimeRestriction

    restriction = TimeRestriction(earliest=serialized.start_date, latest=None, catchup=True)
    import pendulum

    previous_run = pendulum.datetime(2025, 9, 10, 4, tz="UTC")
    previous = DataInterval(previous_run, previous_run)
    info = serialized.timetable.next_dagrun_info(
        last_automated_data_interval=previous, restriction=restriction
    )
    assert info.run_after == datetime(2025, 9, 11, 4, tzinfo=UTC)
    assert info.data_interval.start == info.data_interval.end  # CronTriggerTimetable
    assert target_day_of_run(_run(info.data_interval.end, info.run_after)) == date(2025, 9, 10)
    assert scheduled_run_time(date(2025, 9, 10)) == info.run_after


def test_backfilled_range_processes_each_day_once(serialized: Any):
    first, last = date(2025, 2, 10), date(2025, 2, 14)
    window = backfill_window(first, last)
    infos = list(serialized.iter_dagrun_infos_between(window.from_time, window.to_time))
    days = [target_day_of_run(_run(i.data_interval.end, datetime.now(UTC))) for i in infos]
    assert days == [first + timedelta(days=n) for n in range(5)]


def test_manual_run_day_with_and_without_conf(serialized: Any):
    import pendulum

    triggered = pendulum.datetime(2025, 9, 11, 13, 37, tz="UTC")
    interval = serialized.timetable.infer_manual_data_interval(run_after=triggered)
    assert target_day_of_run(_run(interval.end, triggered)) == date(2025, 9, 10)
    # Airflow 3: a UI trigger without a logical date has no data interval at all.
    assert target_day_of_run(_run(None, triggered)) == date(2025, 9, 10)
    assert target_day_of_run(_run(None, triggered, {"date": "2025-07-04"})) == date(2025, 7, 4)
    assert target_day(None, triggered, {"date": "2025-09-10"}) == date(2025, 9, 10)


def test_conf_date_param_is_validated_by_airflow(dag: Any):
    from airflow.sdk.exceptions import ParamValidationError

    date_param = dag.params.get_param("date")
    assert date_param.resolve("2025-07-04") == "2025-07-04"
    assert date_param.resolve(None) is None  # scheduled runs: the rule decides
    with pytest.raises(ParamValidationError):
        date_param.resolve("04/07/2025")
