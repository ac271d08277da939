"""The batch's stages, each idempotent and safe to retry (the Airflow DAG runs them as tasks):

    raw_day_status → stage_day → check_quality → publish_lake → load_warehouse

Every function takes the UTC day and optional Settings (default: `load_settings()`), and
returns a JSON-serialisable dict (Airflow XCom). `stage_day` also accepts an existing
SparkSession (the tests' shared one); otherwise it uses the active session or builds one.
`clients` says how the lake's S3 and a Redshift warehouse are reached: by default from the
settings (boto3 with S3_ENDPOINT_URL, WAREHOUSE_URL); inside Airflow from Airflow connections
(`etl.airflow_connections`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from pyspark.sql import SparkSession

from binance_etl.db import connect, redact, resolve_database_url, resolve_warehouse_url
from binance_etl.settings import Settings, SettingsError, load_settings
from etl.exchange import add_to_report, check_day
from etl.extract import read_day
from etl.klines_source import DayKlines, fetch_day_klines
from etl.lake import Lake
from etl.load import DbApiRunner, PostgresTarget, StatementRunner, load_day, load_day_redshift
from etl.quality import (
    QualityGateError,
    SymbolTotals,
    add_check,
    compare_live_bars,
    evaluate,
    fact_totals,
    fact_violations,
    live_bars_of_day,
    log_report,
    raise_if_failed,
    raw_totals,
)
from etl.redshift import connect_redshift
from etl.spark import build_session, check_remote
from etl.transform import build_dim_symbol, build_dim_time, build_fact_trades
from etl.utils import TABLES, check_not_future, day_bounds, jsonable, parse_lake_uri

__all__ = [
    "Clients",
    "QualityGateError",
    "RawStoreUnreachable",
    "check_quality",
    "check_raw_store",
    "load_warehouse",
    "publish_lake",
    "raw_day_status",
    "stage_day",
]

logger = logging.getLogger(__name__)


class RawStoreUnreachable(RuntimeError):
    """The raw trades store cannot be reached."""


@dataclass(frozen=True)
class Clients:
    """How the batch reaches the lake's S3 and a Redshift warehouse; None = from the settings.

    `s3` makes the lake's boto3 S3 client; `redshift` runs the day's Redshift statements in
    one transaction (and makes the warehouse Redshift, whatever WAREHOUSE_URL says).
    """

    s3: Callable[[], Any] | None = None
    redshift: StatementRunner | None = None


def lake_for(settings: Settings, clients: Clients | None = None) -> Lake:
    return Lake(
        parse_lake_uri(settings.lake_uri),
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_client=clients.s3 if clients else None,
    )


def _raw_connection(settings: Settings) -> psycopg.Connection:
    url = resolve_database_url(settings)
    try:
        return connect(url, autocommit=True, timeout=5)
    except psycopg.OperationalError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines) or type(error).__name__
        raise RawStoreUnreachable(f"cannot reach the raw store {redact(url)}: {reason}") from None


def check_raw_store(settings: Settings | None = None) -> None:
    """Raises RawStoreUnreachable (one line, password redacted) unless the raw store answers."""
    _raw_connection(settings or load_settings()).close()


def raw_day_status(day: date, settings: Settings | None = None) -> tuple[bool, str]:
    """Is the raw day complete? Every configured symbol has a stored trade at or after the next
    day's 00:00 (the stream passed the day's end) and no trade-id gap inside the day."""
    settings = settings or load_settings()
    _, end = day_bounds(day)
    problems: list[str] = []
    with _raw_connection(settings) as conn:
        totals = raw_totals(conn, day)
        for symbol in settings.symbols:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM public.trades"
                " WHERE symbol = %s AND trade_time >= %s)",
                (symbol, end),
            ).fetchone()
            if not (row and row[0]):
                problems.append(f"{symbol}: no trade stored after the day's end yet")
            gaps = totals[symbol].missing_ids if symbol in totals else 0
            if gaps:
                problems.append(f"{symbol}: {gaps} trade id(s) missing inside the day")
    if problems:
        return False, f"{day} incomplete: " + "; ".join(problems)
    return True, f"{day} complete for {', '.join(settings.symbols)}"


def stage_day(
    day: date,
    settings: Settings | None = None,
    *,
    allow_empty: bool = False,
    spark: SparkSession | None = None,
    clients: Clients | None = None,
) -> dict[str, Any]:
    """Extract + transform the day with Spark, run the quality gate, and (if it passed) write
    the day's Parquet to the lake's staging area; the JSON report goes beside it either way."""
    settings = settings or load_settings()
    check_not_future(day)
    database_url = resolve_database_url(settings)
    _raw_connection(settings).close()  # fail fast, with one line, before Spark starts
    if settings.spark_remote:
        check_remote(settings.spark_remote)
    lake = lake_for(settings, clients)
    seconds: dict[str, float] = {}
    # PostgreSQL's own per-symbol totals (the gate's reference) are computed in a thread while
    # the JVM starts and Spark reads: PostgreSQL works while the driver waits for the JVM.
    # Binance's klines for the exchange check download in another thread meanwhile.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gate-reference") as pool:
        reference_future = pool.submit(_raw_reference, settings, day)
        klines_future = pool.submit(_klines, settings, day)
        started = time.perf_counter()
        # A Spark Connect session built here is released at the end (server-side state);
        # an in-process one stays active for the process, as it always has.
        release = spark is None and settings.spark_remote is not None and (
            SparkSession.getActiveSession() is None
        )
        spark = spark or build_session(settings.spark_master, remote=settings.spark_remote)
        seconds["spark_start"] = time.perf_counter() - started
        try:
            return _stage(day, settings, spark, lake, database_url, seconds,
                          reference_future.result, klines_future.result,
                          allow_empty=allow_empty)
        finally:
            if release:
                spark.stop()


def _klines(settings: Settings, day: date) -> DayKlines | None:
    if settings.exchange_check == "off":
        return None
    return fetch_day_klines(settings.binance_data_url, settings.binance_rest_url,
                            settings.symbols, day)


def _raw_reference(settings: Settings, day: date) -> dict[str, SymbolTotals]:
    with _raw_connection(settings) as conn:
        # One backend: the query runs beside the JVM's start and finishes before Spark reads
        # (≈3 s for 10 M trades), and parallel workers would only take cores from the JVM.
        conn.execute("SET max_parallel_workers_per_gather = 0")
        return raw_totals(conn, day)


def _live_bars_check(settings: Settings, day: date, facts: Any) -> dict[str, Any]:
    """The live bars of the day (bars_1m, in the raw store) against the day's facts."""
    with _raw_connection(settings) as conn:
        return compare_live_bars(facts, live_bars_of_day(conn, day))


def _stage(
    day: date,
    settings: Settings,
    spark: SparkSession,
    lake: Lake,
    database_url: str,
    seconds: dict[str, float],
    reference: Callable[[], dict[str, SymbolTotals]],
    klines: Callable[[], DayKlines | None],
    *,
    allow_empty: bool,
) -> dict[str, Any]:

    started = time.perf_counter()
    trades = read_day(
        spark,
        database_url,
        day,
        partitions=settings.jdbc_partitions,
        fetch_size=settings.jdbc_fetch_size,
    )
    # The one pass over JDBC: read, aggregate, and collect the day's facts as Arrow (one row per
    # symbol and minute: ~1,440 per symbol, ~270 KB per symbol in memory). The gate's checks
    # and the Parquet writes then run on that table in milliseconds instead of Spark jobs.
    facts = build_fact_trades(trades, day).toArrow().sort_by(
        [("symbol", "ascending"), ("trade_minute", "ascending")]
    )
    seconds["extract_transform"] = time.perf_counter() - started

    started = time.perf_counter()
    violations = fact_violations(facts)
    by_symbol = fact_totals(facts)
    report = evaluate(
        day,
        violations,
        by_symbol,
        reference(),
        allow_empty=allow_empty,
        gap_fail_threshold=settings.gap_fail_threshold,
    )
    report = add_check(report, _live_bars_check(settings, day, facts))
    seconds["quality"] = time.perf_counter() - started
    started = time.perf_counter()
    day_klines = klines()  # downloaded beside Spark's work; usually ready by now
    seconds["exchange_wait"] = time.perf_counter() - started
    started = time.perf_counter()
    add_to_report(report, check_day(facts, day_klines, settings.exchange_check))
    seconds["exchange_check"] = time.perf_counter() - started
    log_report(report)

    started = time.perf_counter()
    staged: dict[str, Any] = {}
    if report["passed"]:
        tables = {
            "dim_time": build_dim_time(day),
            "dim_symbol": build_dim_symbol([*by_symbol, *settings.symbols]),
            "fact_trades": facts,
        }
        staged = lake.stage(day, tables)
    else:
        lake.clear_staging(day)
    report_uri = lake.write_staged_report(day, report)
    seconds["stage_write"] = time.perf_counter() - started
    return jsonable(
        {
            "day": day,
            "passed": report["passed"],
            "rows_read": report["rows_read"],
            "symbols": len(by_symbol),
            "minutes": facts.num_rows,
            "staged": staged,
            "files": sum(item["files"] for item in staged.values()),
            "bytes": sum(item["bytes"] for item in staged.values()),
            "report": report_uri,
            "seconds": {key: round(value, 3) for key, value in seconds.items()},
        }
    )


def check_quality(
    day: date, settings: Settings | None = None, *, clients: Clients | None = None
) -> dict[str, Any]:
    """The staged day's verdict; raises QualityGateError unless it passed."""
    settings = settings or load_settings()
    lake = lake_for(settings, clients)
    report = lake.read_staged_report(day)
    if report is None:
        report = lake.read_published_report(day)  # a retry after publish_lake already ran
    if report is None:
        raise QualityGateError(f"no quality report for {day}: run stage_day first")
    raise_if_failed(report)
    return {
        "day": day.isoformat(),
        "passed": True,
        "rows_read": report["rows_read"],
        "checks": [item["name"] for item in report["checks"]],
    }


def publish_lake(
    day: date, settings: Settings | None = None, *, clients: Clients | None = None
) -> dict[str, Any]:
    """Swap the staged day into `{LAKE_URI}/{table}/year=/month=/day=/` (only if it passed)."""
    settings = settings or load_settings()
    lake = lake_for(settings, clients)
    report = lake.read_staged_report(day)
    if report is None:
        published = lake.read_published_report(day)
        if published is not None and all(lake.partition_files(t, day) for t in TABLES):
            logger.info("%s is already published; nothing staged", day)
            return {"day": day.isoformat(), "already_published": True, "tables": {
                table: {"uri": lake.partition_uri(table, day)} for table in TABLES}}
        raise FileNotFoundError(f"nothing staged for {day}: run stage_day first")
    raise_if_failed(report)
    tables = lake.publish(day, TABLES)
    return {
        "day": day.isoformat(),
        "already_published": False,
        "tables": tables,
        "files": sum(item["files"] for item in tables.values()),
        "bytes": sum(item["bytes"] for item in tables.values()),
    }


def redshift_runner(settings: Settings, clients: Clients) -> StatementRunner | None:
    """The Redshift warehouse's runner: the given one, or WAREHOUSE_URL=redshift://'s; None
    for a PostgreSQL warehouse."""
    if clients.redshift is not None:
        return clients.redshift
    if settings.warehouse_is_redshift:
        url = str(settings.warehouse_url)
        return DbApiRunner(lambda: connect_redshift(url))
    return None


def load_warehouse(
    day: date, settings: Settings | None = None, *, clients: Clients | None = None
) -> dict[str, Any]:
    """Replace the day in the warehouse from the published lake partition (one transaction)."""
    settings = settings or load_settings()
    clients = clients or Clients()
    lake = lake_for(settings, clients)
    report = lake.read_published_report(day)
    if report is None or not report.get("passed"):
        raise FileNotFoundError(f"{day} is not published in the lake: run publish_lake first")
    runner = redshift_runner(settings, clients)
    if runner is not None:
        if not settings.redshift_iam_role:
            raise SettingsError("REDSHIFT_IAM_ROLE: required for a Redshift warehouse")
        tables, executed = load_day_redshift(runner, lake, day, settings.redshift_iam_role)
        return {"day": day.isoformat(), "backend": "redshift", "via": executed.via,
                "statement_id": executed.statement_id, "tables": tables}
    conn = connect(resolve_warehouse_url(settings))
    try:
        loaded = load_day(conn, PostgresTarget(lake), day)
    finally:
        conn.close()
    return {"day": day.isoformat(), "backend": "postgres", "tables": loaded}
