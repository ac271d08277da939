"""Benchmark of the day batch on a generated day (default 10 million trades, 4 symbols).

    python -m bench.etl [--trades 10000000] [--keep]

Prints, from one run on the same data: PostgreSQL's `COPY (day) TO STDOUT` into a null sink
(the floor for anything that reads over a connection; the fastest of three COPYs), PostgreSQL's
own GROUP BY of the day into a table, the Spark extract alone (no-op sink), the whole batch end
to end (Spark start to warehouse committed) with its stages — including the exchange check
against 1m klines dumps made by PostgreSQL from the same trades (each trade's quote quantity cut
to 8 decimals, as Binance's) and served by the replay feed on 127.0.0.1 —, the naive tutorial
path (one JDBC partition, the driver's default fetch size, the whole table filtered by Spark,
float columns) as a baseline, the ratios and the peak memory (resident set of the process
tree: driver JVM + Python; in local mode the executors live in the driver JVM). Each Spark
variant runs in its own child process.

Beside them: the same batch without the JVM class-data archive (`SPARK_CDS=off`: does it still
earn its keep?), the single-machine peer ConnectorX + Polars on the same day (`bench.peer`), and
the batch as a Spark Connect client (SPARK_REMOTE) of a server started here (local[2]): its
first batch on the fresh server, then two on the warm server (the better one is the figure; the
peer also runs twice, best taken) — the client's memory and the server's are measured apart, and
both are also timed as whole processes (interpreter start to exit: imports and teardown too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from binance_etl.db import connect, resolve_database_url, with_database
from binance_etl.logs import setup_logging
from binance_etl.replay.testing import running_feed
from binance_etl.schema import ensure_partitions, migrate
from binance_etl.settings import load_settings
from etl.utils import day_bounds

KLINES_SQL = """
SELECT symbol, date_trunc('minute', trade_time) AS minute,
       (array_agg(price ORDER BY trade_time, trade_id))[1], max(price), min(price),
       (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1], sum(quantity),
       sum(trunc(price * quantity, 8)), count(*),
       coalesce(sum(quantity) FILTER (WHERE NOT is_buyer_maker), 0),
       coalesce(sum(trunc(price * quantity, 8)) FILTER (WHERE NOT is_buyer_maker), 0)
FROM trades WHERE trade_time >= %(start)s AND trade_time < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""

logger = logging.getLogger(__name__)

BENCH_DB = "bench_etl"
BENCH_SYMBOLS = (
    # symbol, first trade id, base price, quantity lot
    ("BTCUSDT", 5_000_000_000, "112345.12345678", "0.00001234"),
    ("ETHUSDT", 2_000_000_000, "4321.87654321", "0.00012345"),
    ("1000PEPEUSDT", 90_000_000, "0.01012345", "123.45678"),
    ("SOLUSDT", 800_000_000, "201.12345678", "0.00123456"),
)

GENERATE_SQL = """
INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time, is_buyer_maker)
SELECT s.symbol, s.first_id + g,
       round((s.base * (1 + 0.02 * sin(g / 5000.0)))::numeric, 8),
       ((g * 104729) %% 99991 + 1) * s.lot,
       %(start)s + (g * 86399999 / %(n)s) * interval '1 millisecond',
       %(start)s + (g * 86399999 / %(n)s + 2) * interval '1 millisecond',
       g %% 7 < 3
FROM (VALUES %(values)s) AS s(symbol, first_id, base, lot),
     generate_series(0::bigint, %(n)s - 1) AS g
"""


def prepare_database(server_url: str, day: date, trades: int) -> str:
    """A bench database holding exactly `trades` generated trades on `day` (reused if so)."""
    with connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
        if exists.fetchone() is None:
            admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    url = with_database(server_url, BENCH_DB)
    start, end = day_bounds(day)
    with connect(url, autocommit=True) as conn:
        migrate(conn)
        ensure_partitions(conn, [day - timedelta(days=1), day, day + timedelta(days=1)])
        row = conn.execute(
            "SELECT count(*) FROM trades WHERE trade_time >= %s AND trade_time < %s", (start, end)
        ).fetchone()
        if row and row[0] == trades:
            logger.info("reusing the generated day (%s trades)", f"{trades:,}")
            return url
        conn.execute("TRUNCATE trades")
        per_symbol = trades // len(BENCH_SYMBOLS)
        started = time.perf_counter()
        conn.execute("SET synchronous_commit = off")
        for index, (symbol, first_id, base, lot) in enumerate(BENCH_SYMBOLS):
            n = per_symbol + (trades - per_symbol * len(BENCH_SYMBOLS) if index == 0 else 0)
            values = f"('{symbol}', {first_id}::bigint, {base}::numeric, {lot}::numeric)"
            # `values` holds the module's own constants only; the rest is bound.
            conn.execute(GENERATE_SQL.replace("%(values)s", values), {"start": start, "n": n})
            # the stream passed the day's end: one trade just after midnight, one just before
            conn.execute(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker)"
                " VALUES (%s, %s, %s, 1, %s, false), (%s, %s, %s, 1, %s, true)",
                (symbol, first_id - 1, base, start - timedelta(milliseconds=1),
                 symbol, first_id + n, base, end),
            )
        conn.execute("ANALYZE trades")
        logger.info("generated %s trades in %.1f s", f"{trades:,}", time.perf_counter() - started)
    return url


def copy_floor(url: str, day: date) -> tuple[float, int]:
    """Seconds for PostgreSQL to hand out the day's rows (`COPY ... TO STDOUT`, null sink)."""
    start, end = day_bounds(day)
    received = 0
    with connect(url) as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        query = (
            "COPY (SELECT symbol, trade_id, price, quantity, trade_time, is_buyer_maker "
            "FROM public.trades WHERE trade_time >= {} AND trade_time < {}) TO STDOUT"
        )
        from psycopg import sql

        statement = sql.SQL(query).format(sql.Literal(start), sql.Literal(end))
        with cursor.copy(statement) as copy:
            for block in copy:
                received += len(block)
        return time.perf_counter() - started, received


def best_copy_floor(url: str, day: date, runs: int = 3) -> tuple[float, int, list[float]]:
    """The floor as the fastest of `runs` COPYs: the first may read a cold page cache, and
    a slow floor would flatter every ratio measured against it."""
    timings = []
    received = 0
    for _ in range(runs):
        seconds, received = copy_floor(url, day)
        timings.append(round(seconds, 2))
    return min(timings), received, timings


def postgres_group_by(url: str, day: date) -> float:
    """Seconds for PostgreSQL's own per-(symbol, minute) GROUP BY of the day into a table."""
    start, end = day_bounds(day)
    with connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_minutes")
        started = time.perf_counter()
        conn.execute(
            """
            CREATE TABLE bench_minutes AS
            SELECT symbol, date_trunc('minute', trade_time) AS trade_minute,
                   min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price,
                   sum(quantity) AS total_quantity, sum(price * quantity) AS total_trade_value,
                   count(*) AS trade_count
            FROM trades WHERE trade_time >= %s AND trade_time < %s
            GROUP BY 1, 2
            """,
            (start, end),
        )
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_minutes")
    return elapsed


class PeakMemory:
    """Samples the resident memory of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
                total = 0
                for process in processes:
                    try:
                        total += process.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                self.peak = max(self.peak, total)
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def write_klines(url: str, day: date, folder: Path) -> float:
    """Binance-style 1m klines dumps of the bench day, made by PostgreSQL from the raw trades
    (an independent reference for the exchange check); returns the seconds it took."""
    from decimal import Decimal

    from binance_etl.replay.dumps import write_klines_rows
    from binance_etl.replay.klines import KlineRow

    def e8(value: Decimal) -> int:
        return int(value.scaleb(8))

    started = time.perf_counter()
    start, end = day_bounds(day)
    with connect(url) as conn:
        rows = conn.execute(KLINES_SQL, {"start": start, "end": end}).fetchall()
    by_symbol: dict[str, dict[int, KlineRow]] = {}
    for symbol, minute, first, high, low, last, volume, quote, count, taker, taker_quote in rows:
        open_ms = int(minute.timestamp()) * 1000
        by_symbol.setdefault(symbol, {})[open_ms] = KlineRow(
            open_ms, e8(first), e8(high), e8(low), e8(last), e8(volume), e8(quote), count,
            e8(taker), e8(taker_quote))
    first_ms = int(start.timestamp()) * 1000
    for symbol, minutes in by_symbol.items():
        close, day_rows = 0, []
        for index in range(1440):
            open_ms = first_ms + index * 60_000
            row = minutes.get(open_ms) or KlineRow(open_ms, close, close, close, close,
                                                   0, 0, 0, 0, 0)
            close = row.close_e8
            day_rows.append(row)
        write_klines_rows(folder, symbol, day, day_rows)
    return time.perf_counter() - started


def klines_download(data_url: str, day: date) -> float:
    """Seconds to download, verify and parse the day's klines dumps of every bench symbol."""
    from etl.klines_source import fetch_day_klines

    started = time.perf_counter()
    got = fetch_day_klines(data_url, data_url, [symbol for symbol, *_ in BENCH_SYMBOLS], day)
    if got.unavailable:
        raise RuntimeError(f"bench klines unavailable: {got.unavailable}")
    return time.perf_counter() - started


def run_variant(variant: str, url: str, day: date, lake: str, *,
                extra_env: dict[str, str] | None = None,
                server_pid: int | None = None) -> dict[str, Any]:
    """One variant in a child process; its JSON result plus the tree's peak memory (and the
    Spark Connect server's, `server_pid`, sampled over the same time)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CDS")}
    env.update({"DATABASE_URL": url, "WAREHOUSE_URL": url, "LAKE_URI": lake,
                "SPARK_MASTER": os.environ.get("SPARK_MASTER", "local[2]"),
                "SYMBOLS": ",".join(symbol for symbol, *_ in BENCH_SYMBOLS), **(extra_env or {})})
    with tempfile.NamedTemporaryFile(suffix=".json") as out, contextlib.ExitStack() as stack:
        command = [sys.executable, "-m", "bench.etl", "--variant", variant, "--day",
                   day.isoformat(), "--out", out.name]
        server = stack.enter_context(PeakMemory(server_pid)) if server_pid else None
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env)
        with PeakMemory(process.pid) as memory:
            code = process.wait(timeout=3600)
        wall = time.perf_counter() - started
        result: dict[str, Any] = json.loads(Path(out.name).read_text() or "{}") if code == 0 else {}
    result.update({"exit_code": code, "process_seconds": wall, "peak_rss_bytes": memory.peak})
    if server is not None:
        result["server_peak_rss_bytes"] = server.peak
    return result


def best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the lowest `key` among those that finished."""
    done = [run for run in runs if run.get(key) is not None] or runs
    return min(done, key=lambda run: run.get(key) or float("inf"))


def run_connect_batches(url: str, day: date, lake: str, runs: int = 2,
                        extra_env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The batch as a Spark Connect client of a server started here (local[2], like the
    in-process variants): the first run meets a fresh server, the later ones a warm one."""
    from etl import connect_server

    settings = load_settings(spark_master=os.environ.get("SPARK_MASTER", "local[2]"))
    with tempfile.TemporaryDirectory(prefix="bench-connect-") as folder:
        state = connect_server.start(settings, directory=Path(folder), port=0)
        try:
            return [run_variant("batch", url, day, lake, server_pid=state.pid,
                                extra_env={**(extra_env or {}), "SPARK_REMOTE": state.url})
                    for _ in range(runs)]
        finally:
            connect_server.stop(Path(folder))


def variant_main(variant: str, day: date, out: str) -> int:
    """Inside the child: time one variant and write its figures as JSON."""
    from pyspark.sql import functions as F

    from etl.extract import read_day, read_day_naive
    from etl.main import run_day
    from etl.spark import build_session

    settings = load_settings()
    database_url = resolve_database_url(settings)
    figures: dict[str, Any] = {}
    if variant == "batch":
        # Like `python -m etl.main`: the batch starts its own session, so the work it overlaps
        # with the JVM's start (PostgreSQL's reference totals) counts as it would in production.
        started = time.perf_counter()
        summary = run_day(day, settings, console=Console(stderr=True, quiet=True))
        figures["batch"] = time.perf_counter() - started
        figures["spark_start"] = summary.seconds.get("spark_start")
        figures["batch_after_start"] = figures["batch"] - summary.seconds.get("spark_start", 0.0)
        figures["stages"] = summary.seconds
        figures["rows_read"] = summary.rows_read
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        Path(out).write_text(json.dumps(figures))
        return 0
    if variant == "peer":
        from bench import peer

        with tempfile.TemporaryDirectory(prefix="bench-peer-") as folder:
            figures.update(peer.run(database_url, day, Path(folder),
                                    partitions=settings.jdbc_partitions))
        Path(out).write_text(json.dumps(figures))
        return 0
    started = time.perf_counter()
    spark = build_session(settings.spark_master)
    figures["spark_start"] = time.perf_counter() - started
    if variant == "extract":
        started = time.perf_counter()
        frame = read_day(spark, database_url, day, partitions=settings.jdbc_partitions,
                         fetch_size=settings.jdbc_fetch_size)
        frame.write.format("noop").mode("overwrite").save()
        figures["extract"] = time.perf_counter() - started
    elif variant == "naive":
        started = time.perf_counter()
        read_day_naive(spark, database_url, day).write.format("noop").mode("overwrite").save()
        figures["extract"] = time.perf_counter() - started
        started = time.perf_counter()
        trades = read_day_naive(spark, database_url, day)
        facts = trades.groupBy("symbol", F.date_trunc("minute", "trade_time").alias("m")).agg(
            F.min("price"), F.max("price"), F.avg("price"), F.sum("quantity"),
            F.sum(F.col("price") * F.col("quantity")), F.count(F.lit(1)),
            F.min(F.struct("trade_time", "trade_id", "price")),
            F.max(F.struct("trade_time", "trade_id", "price")),
        )
        with tempfile.TemporaryDirectory() as folder:
            facts.write.mode("overwrite").parquet(folder + "/facts")
        figures["naive_batch_after_extract"] = time.perf_counter() - started
    else:
        raise ValueError(f"unknown variant {variant!r}")
    spark.stop()
    Path(out).write_text(json.dumps(figures))
    return 0


def run(trades: int = 10_000_000, day: date = date(2025, 9, 10), *, keep: bool = False,
        naive: bool = True) -> dict[str, Any]:
    """Generate the day, measure every figure, return them (seconds, bytes, ratios)."""
    settings = load_settings()
    server = resolve_database_url(settings)
    url = prepare_database(server, day, trades)
    figures: dict[str, Any] = {"trades": trades, "day": day.isoformat()}
    try:
        figures["copy_floor"], figures["copy_bytes"], figures["copy_floor_runs"] = (
            best_copy_floor(url, day)
        )
        figures["postgres_group_by"] = postgres_group_by(url, day)
        with (
            tempfile.TemporaryDirectory(prefix="bench-lake-") as lake,
            tempfile.TemporaryDirectory(prefix="bench-klines-") as klines,
        ):
            figures["klines_written"] = write_klines(url, day, Path(klines))
            figures["extract"] = run_variant("extract", url, day, lake)
            with running_feed(symbols=[symbol for symbol, *_ in BENCH_SYMBOLS],
                              dumps_dir=klines, start_paused=True) as feed:
                figures["klines_download"] = klines_download(feed.data_url, day)
                exchange = {"BINANCE_DATA_URL": feed.data_url, "BINANCE_REST_URL": feed.rest_url,
                            "EXCHANGE_CHECK": "fail"}
                figures["batch"] = run_variant("batch", url, day, lake, extra_env=exchange)
                # Does the JVM class-data archive (etl/jvmcache.py) still earn its keep?
                figures["batch_no_cds"] = run_variant("batch", url, day, lake,
                                                      extra_env={**exchange, "SPARK_CDS": "off"})
                # Best of two for the peer and of the two warm-server batches: the same number
                # of tries each way, the figure that the code reaches when nothing interferes.
                figures["peer_runs"] = [run_variant("peer", url, day, lake) for _ in range(2)]
                figures["peer"] = best(figures["peer_runs"], "peer")
                figures["connect_first"], *warm = run_connect_batches(
                    url, day, lake, runs=3, extra_env=exchange)
                figures["connect_runs"] = warm
                figures["connect"] = best(warm, "batch")
            if naive:
                figures["naive"] = run_variant("naive", url, day, lake)
    finally:
        if not keep:
            with connect(server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    floor = figures["copy_floor"]
    batch = figures["batch"]
    peer_seconds = figures["peer"].get("peer", float("nan"))
    figures["ratios"] = {
        "batch_over_floor": batch.get("batch", float("nan")) / floor,
        "extract_over_floor": figures["extract"].get("extract", float("nan")) / floor,
        "extract_transform_stage_over_floor":
            batch.get("stages", {}).get("extract_transform", float("nan")) / floor,
        "connect_batch_over_floor": figures["connect"].get("batch", float("nan")) / floor,
        "peer_over_floor": peer_seconds / floor,
        "connect_batch_over_peer": figures["connect"].get("batch", float("nan")) / peer_seconds,
        # whole processes, interpreter start to exit: imports (pyspark's Connect client; Polars
        # and ConnectorX) and teardown included on both sides
        "connect_process_over_peer_process":
            figures["connect"]["process_seconds"] / figures["peer"]["process_seconds"],
        "batch_over_peer": batch.get("batch", float("nan")) / peer_seconds,
        "batch_no_cds_over_batch":
            figures["batch_no_cds"].get("batch", float("nan")) / batch.get("batch", float("nan")),
    }
    if naive:
        naive_total = (figures["naive"].get("spark_start", 0) + figures["naive"].get("extract", 0)
                       + figures["naive"].get("naive_batch_after_extract", 0))
        figures["naive"]["batch"] = naive_total if figures["naive"]["exit_code"] == 0 else None
        figures["ratios"]["naive_extract_over_extract"] = (
            figures["naive"].get("extract", float("nan")) / figures["extract"]["extract"]
            if figures["naive"]["exit_code"] == 0 else None
        )
    return figures


def print_figures(figures: dict[str, Any]) -> None:
    gib = 1024**3
    floor = figures["copy_floor"]
    table = Table(title=f"ETL day batch — {figures['trades']:,} trades, 4 symbols, local[2]")
    for column in ("measure", "seconds", "× COPY floor", "peak memory"):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def row(name: str, seconds: float | None, memory: int | None = None) -> None:
        table.add_row(
            name,
            "failed" if seconds is None else f"{seconds:.1f}",
            "" if seconds is None else f"{seconds / floor:.2f}",
            "" if memory is None else f"{memory / gib:.2f} GiB",
        )

    runs = " / ".join(f"{value:.1f}" for value in figures.get("copy_floor_runs", []))
    row(f"PostgreSQL COPY (day) TO STDOUT, null sink (best of {runs})", floor)
    row("PostgreSQL GROUP BY (symbol, minute) into a table", figures["postgres_group_by"])
    extract = figures["extract"]
    row("Spark session start", extract.get("spark_start"))
    row("Spark extract, no-op sink (2 ranges, fetch 50k)", extract.get("extract"),
        extract["peak_rss_bytes"])
    batch = figures["batch"]
    for stage, seconds in batch.get("stages", {}).items():
        row(f"  batch stage: {stage}", seconds)
    if "klines_download" in figures:
        row("  klines dumps: download + verify + parse, 4 symbols (alone, local feed)",
            figures["klines_download"])
        row("  klines dumps made by PostgreSQL (bench setup, not the batch)",
            figures["klines_written"])
    row("batch end to end (Spark start → warehouse committed)", batch.get("batch"),
        batch["peak_rss_bytes"])
    no_cds = figures["batch_no_cds"]
    row("  same, without the JVM class-data archive (SPARK_CDS=off)", no_cds.get("batch"),
        no_cds["peak_rss_bytes"])
    row("    its Spark start", no_cds.get("spark_start"))
    warm_runs = " / ".join(f"{run.get('batch') or float('nan'):.1f}"
                           for run in figures.get("connect_runs", []))
    for key, name in (("connect_first", "first batch on a fresh server"),
                      ("connect", f"warm server (best of {warm_runs})")):
        run = figures[key]
        row(f"batch through Spark Connect, {name} (client memory)", run.get("batch"),
            run["peak_rss_bytes"])
        row("  its whole process (interpreter start to exit)", run.get("process_seconds"))
        table.add_row("  the server's peak memory (its JVM)", "", "",
                      f"{run['server_peak_rss_bytes'] / gib:.2f} GiB")
        for stage, seconds in run.get("stages", {}).items():
            row(f"  stage: {stage}", seconds)
    peer = figures["peer"]
    peer_runs = " / ".join(f"{run.get('peer') or float('nan'):.1f}"
                           for run in figures.get("peer_runs", []))
    row(f"ConnectorX + Polars: read, facts, Parquet ({peer.get('value_type', '?')} Σ p×q; "
        f"best of {peer_runs})", peer.get("peer"), peer["peak_rss_bytes"])
    row("  its whole process (interpreter start to exit)", peer.get("process_seconds"))
    row("  its ConnectorX read", peer.get("peer_read"))
    if "naive" in figures:
        naive = figures["naive"]
        row("naive extract (1 partition, default fetch, floats)", naive.get("extract"),
            naive["peak_rss_bytes"])
        row("naive batch end to end (float aggregates → Parquet)", naive.get("batch"))
    Console().print(table)
    Console().print({key: round(value, 2) if isinstance(value, float) else value
                     for key, value in figures["ratios"].items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.etl", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--day", default="2025-09-10")
    parser.add_argument("--keep", action="store_true", help="keep the bench database for reruns")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup_logging()
    day = date.fromisoformat(args.day)
    if args.variant:
        return variant_main(args.variant, day, args.out)
    figures = run(args.trades, day, keep=args.keep, naive=not args.no_naive)
    print_figures(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
