"""DAG `daily_binance_etl`: one run per UTC day turns that day's raw trades into the star schema.

    wait_for_raw_day >> run_etl_pipeline >> quality_gate >> publish_lake >> load_warehouse

Thin on purpose: the work lives in `etl.pipeline` (imported inside each task, so parsing this
file starts no Spark and opens no connection), the day rule in `etl.dagrules`, every setting in
`binance_etl.settings` (environment / `.env`; secrets never here), the lake's S3 and a Redshift
warehouse from Airflow connections (`etl.airflow_connections`: `aws_default`,
`redshift_default`). Each step is idempotent, so a retry or a rerun of a day replaces that day
and never duplicates it. See docs/orchestration.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import (
    BaseSensorOperator,
    Context,
    CronTriggerTimetable,
    Param,
    chain,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from binance_etl.settings import Settings, SettingsError, load_settings
from etl.dagrules import DAG_ID, SCHEDULE, DayRuleError, parse_day, target_day_of_run

if TYPE_CHECKING:
    from etl.pipeline import Clients

logger = logging.getLogger(__name__)

RETRIES = 3
RETRY_DELAY = timedelta(minutes=2)
RETRY_BACKOFF = 2.0  # 2, 4, 8 minutes ...
MAX_RETRY_DELAY = timedelta(minutes=30)


# SettingsError is a SystemExit (one clean line for the CLIs). Inside Airflow it must become an
# ordinary error: an import error while parsing, a failure without retries inside a task.


def _parse_settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise RuntimeError(str(error.code)) from None


def _start_date(settings: Settings) -> datetime:
    try:
        day = parse_day(settings.airflow_start_date)
    except DayRuleError as error:
        raise RuntimeError(f"configuration error: AIRFLOW_START_DATE: {error}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@contextmanager
def _config_errors_fail() -> Iterator[None]:
    """A configuration error inside etl/ fails the task at once: a retry would not fix it."""
    try:
        yield
    except SettingsError as error:
        raise AirflowFailException(str(error.code)) from None


def _task_settings() -> Settings:
    with _config_errors_fail():
        return load_settings()


def _task_clients(settings: Settings) -> Clients:
    """S3 and Redshift from Airflow connections; a missing or malformed one fails at once."""
    from etl.airflow_connections import clients_from_connections

    with _config_errors_fail():
        return clients_from_connections(settings)


def _run_day(context: Context) -> date:
    """The UTC day this run processes (etl.dagrules); a bad conf date fails without retries."""
    try:
        return target_day_of_run(context["dag_run"], context["params"])
    except DayRuleError as error:
        raise AirflowFailException(f"cannot decide the day of this run: {error}") from error


class RawDaySensor(BaseSensorOperator):
    """Waits until `etl.pipeline.raw_day_status` says the run's raw day is complete.

    Off when AIRFLOW_WAIT_FOR_RAW_DAY=false or the run's conf says `"wait_for_raw_day": false`
    (days loaded in bulk from Binance's dumps are complete by construction). On timeout the
    failure names the day and the last reason instead of the generic sensor message.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_reason = "not checked yet"

    def poke(self, context: Context) -> bool:
        day = _run_day(context)
        settings = _task_settings()
        if not settings.airflow_wait_for_raw_day or not context["params"].get(
            "wait_for_raw_day", True
        ):
            self.log.info("not waiting for raw day %s: switched off by configuration", day)
            return True
        from etl.pipeline import raw_day_status

        with _config_errors_fail():
            complete, reason = raw_day_status(day, settings)
        self._last_reason = reason
        self.log.info("raw day %s complete=%s: %s", day, complete, reason)
        return complete

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(
                f"raw trades of {_run_day(context)} still incomplete after waiting "
                f"{timedelta(seconds=self.timeout)} ({self._last_reason}). Is the streamer "
                "(python stream.py) running and has its gap recovery caught up? To process the "
                'day anyway, trigger it with conf {"wait_for_raw_day": false}.'
            ) from error


_SETTINGS = _parse_settings()


@dag(
    dag_id=DAG_ID,
    description="Binance spot trades of one UTC day -> Parquet lake -> warehouse star schema",
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC"),
    start_date=_start_date(_SETTINGS),
    catchup=False,  # history is loaded on purpose, with `airflow backfill create`
    max_active_runs=1,
    default_args={
        "owner": "binance-etl",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": RETRY_BACKOFF,
        "max_retry_delay": MAX_RETRY_DELAY,
    },
    params={
        "date": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="UTC day to process (YYYY-MM-DD); empty = the day before the run",
        ),
        "allow_empty": Param(False, type="boolean", description="accept a day without trades"),
        "wait_for_raw_day": Param(
            True, type="boolean", description="wait until the raw day is complete"
        ),
    },
    tags=["binance", "etl"],
    doc_md=__doc__,
)
def daily_binance_etl() -> None:
    wait_for_raw_day = RawDaySensor(
        task_id="wait_for_raw_day",
        mode="reschedule",  # frees the worker slot between pokes
        poke_interval=_SETTINGS.airflow_raw_day_poke_seconds,
        timeout=timedelta(minutes=_SETTINGS.airflow_raw_day_timeout_minutes),
        retries=0,  # a timeout is final; the message says what to do
    )

    @task(execution_timeout=timedelta(hours=3))
    def run_etl_pipeline() -> dict[str, Any]:
        """Spark extract + transform of the day into staged Parquet and its quality report."""
        from etl.pipeline import stage_day

        context = get_current_context()
        day = _run_day(context)
        allow_empty = bool(context["params"]["allow_empty"])
        logger.info("staging %s (allow_empty=%s)", day, allow_empty)
        settings = _task_settings()
        clients = _task_clients(settings)  # every connection of the run, before Spark starts
        with _config_errors_fail():
            return stage_day(day, settings, allow_empty=allow_empty, clients=clients)

    @task
    def quality_gate() -> dict[str, Any]:
        """Stops the run (without retries: the data would not change) when the report failed."""
        from etl.pipeline import QualityGateError, check_quality

        day = _run_day(get_current_context())
        settings = _task_settings()
        clients = _task_clients(settings)
        try:
            with _config_errors_fail():
                return check_quality(day, settings, clients=clients)
        except QualityGateError as error:
            raise AirflowFailException(f"quality gate failed for {day}: {error}") from error

    @task
    def publish_lake() -> dict[str, Any]:
        """Swaps the staged day into the lake's day partitions."""
        from etl.pipeline import publish_lake as publish

        settings = _task_settings()
        clients = _task_clients(settings)
        with _config_errors_fail():
            return publish(_run_day(get_current_context()), settings, clients=clients)

    @task
    def load_warehouse() -> dict[str, Any]:
        """Replaces the day in the warehouse in one transaction (PostgreSQL, or Redshift through
        the Data API or RedshiftSQLHook)."""
        from etl.pipeline import load_warehouse as load

        settings = _task_settings()
        clients = _task_clients(settings)
        with _config_errors_fail():
            return load(_run_day(get_current_context()), settings, clients=clients)

    chain(wait_for_raw_day, run_etl_pipeline(), quality_gate(), publish_lake(), load_warehouse())


daily_binance_etl()
