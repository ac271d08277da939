"""`python -m live`: start the query, run until SIGINT/SIGTERM or `--duration`, stop cleanly.

The query is `readStream.format("binance_trades")` (live/source.py) → `foreachBatch(BarsSink)`
(live/sink.py), triggered every LIVE_TRIGGER_SECONDS, checkpointed at LIVE_CHECKPOINT_URI.
In process by default; with SPARK_REMOTE through a Spark Connect server (live/remote.py), where
the query, its checkpoint and the sink run on the server and a lost server is waited for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from binance_etl.db import connect, redact, resolve_database_url
from binance_etl.logs import setup_logging
from binance_etl.schema import migrate
from binance_etl.settings import Settings, SettingsError, load_settings, parse_symbols
from etl.s3a import check_access, hadoop_conf, is_s3, jars_packages, s3a_uri
from etl.spark import (
    POSTGRES_JDBC_PACKAGE,
    STATUS_RETENTION,
    build_session,
    configure,
    is_connect_session,
)
from live.remote import RECONNECT_SECONDS, first_line, run_remote
from live.sink import BarsSink, summary_of
from live.source import NAME, TradesSource

logger = logging.getLogger(__name__)

QUERY_NAME = "bars_1m"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m live",
        description="Keep bars_1m current from the raw trades table until SIGINT/SIGTERM.",
    )
    parser.add_argument("--symbols", help="comma list, any case (default: SYMBOLS)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--reconnect-seconds", type=float, default=RECONNECT_SECONDS,
        help="with SPARK_REMOTE: how long an unreachable Spark Connect server is waited for "
             f"before giving up (default {RECONNECT_SECONDS:.0f})")
    return parser


def checkpoint_location(uri: str) -> str:
    """A local path made absolute (Spark would resolve it against its own working directory),
    or s3:// spelled s3a:// for Hadoop."""
    if is_s3(uri):
        return s3a_uri(uri)
    if urlsplit(uri).scheme == "file":
        return uri
    return str(Path(uri).expanduser().resolve())


def spark_conf(settings: Settings) -> dict[str, str]:
    """What the live session needs beyond the batch's: Python workers on this interpreter (the
    source's reads run there), and s3a for an S3 checkpoint."""
    conf = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if is_s3(settings.live_checkpoint_uri):
        conf.update(hadoop_conf(settings))
    return conf


# The live JVM's memory, bounded by settings rather than by how far the collector and Spark's
# status store happen to grow over hours (measured with Native Memory Tracking at 5,000
# trades/s: a live set of 130 MB after a full collection, while the committed heap kept growing
# toward its maximum; docs/live.md, "Memory"):
# - a fixed heap, committed and touched at start (-Xms = -Xmx, AlwaysPreTouch); 512 MiB is
#   four times the live set and holds the catch-up's 1,000,000-trade micro-batches;
# - the JIT's code cache capped (the JVM reserves 240 MB by default; the query's code used
#   97 MB after twelve minutes and was still growing);
# - the status store keeping a few dozen jobs, stages and SQL executions (etl.spark).
DRIVER_MEMORY = "512m"
LIVE_JAVA_OPTIONS = (f"-Xms{DRIVER_MEMORY}", "-XX:+AlwaysPreTouch",
                     "-XX:ReservedCodeCacheSize=128m")


def session(settings: Settings) -> SparkSession:
    """The in-process session (a JVM in this process)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors' Python workers (local mode)
    extra = {**spark_conf(settings), **STATUS_RETENTION}
    if is_s3(settings.live_checkpoint_uri):
        extra["spark.jars.packages"] = jars_packages(POSTGRES_JDBC_PACKAGE)
    return build_session(settings.spark_master, app_name="binance-etl-live",
                         shuffle_partitions=2, driver_memory=DRIVER_MEMORY,
                         java_options=LIVE_JAVA_OPTIONS, extra_conf=extra)


# Runtime SQL settings of the live query's own session. Whole-stage code generation is off: a
# micro-batch holds a second of trades, and compiling the wide aggregate's generated code cost
# more than it saved (measured: first micro-batch 11 s -> 2 s, later ones 1.4-2.3 s -> 0.7-1 s).
LIVE_SQL_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}


def start_query(spark: SparkSession, url: str, symbols: list[str], settings: Settings,
                sink: BarsSink) -> StreamingQuery:
    """The query, in a session of its own (in process: same SparkContext, its own SQL
    settings; through Spark Connect the client's session is already one of its own)."""
    spark = configure(spark if is_connect_session(spark) else spark.newSession())
    for key, value in LIVE_SQL_CONF.items():
        spark.conf.set(key, value)
    spark.dataSource.register(TradesSource)
    trades = (spark.readStream.format(NAME).option("url", url)
              .option("symbols", ",".join(symbols)).load())
    return (
        trades.writeStream.queryName(QUERY_NAME)
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint_location(settings.live_checkpoint_uri))
        .trigger(processingTime=f"{settings.live_trigger_seconds} seconds")
        .start()
    )


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.duration is not None and args.duration <= 0:
        raise SystemExit("--duration: must be a positive number of seconds")
    if args.reconnect_seconds <= 0:
        raise SystemExit("--reconnect-seconds: must be a positive number of seconds")
    settings = load_settings()
    symbols = settings.symbols
    if args.symbols is not None:
        try:
            symbols = parse_symbols(args.symbols)
        except ValueError as error:
            raise SettingsError(f"--symbols: {error}") from None
    if is_s3(settings.live_checkpoint_uri) and not settings.spark_remote:
        # one line now, not a JVM stack trace after the AWS SDK's download (through Spark
        # Connect the server writes the checkpoint, with its own credentials)
        check_access(settings.live_checkpoint_uri, settings, "LIVE_CHECKPOINT_URI")
    url = resolve_database_url(settings)
    with connect(url, autocommit=True) as conn:
        migrate(conn, ahead_days=settings.partitions_ahead_days)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received: stopping the live query", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    deadline = None if args.duration is None else time.monotonic() + args.duration
    if settings.spark_remote:
        try:
            return run_remote(settings, url, symbols, start_query,
                              checkpoint=checkpoint_location(settings.live_checkpoint_uri),
                              stop=stop, deadline=deadline, patience=args.reconnect_seconds)
        except PySparkException as error:  # e.g. the server cannot use the checkpoint
            logger.error("the live query could not start: %s", reason(error))
            return 1
    spark = session(settings)
    sink = BarsSink(url)
    try:
        query = start_query(spark, url, symbols, settings, sink)
    except (PySparkException, Py4JJavaError) as error:
        spark.stop()
        logger.error("the live query could not start: %s", reason(error))
        return 1
    log_started(url, symbols, settings)
    try:
        while query.isActive and not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            query.awaitTermination(1)
    finally:
        failure = query.exception()
        query.stop()
        spark.stop()
    if failure is not None:
        logger.error("the live query failed: %s", reason(failure))
        return 1
    summary = summary_of(sink.stats)
    print("live bars: " + ", ".join(f"{k} {v}" for k, v in summary.items()), flush=True)
    return 0


def reason(error: BaseException) -> str:
    """The first line of a failure, the JVM's own exception rather than py4j's call site."""
    if isinstance(error, Py4JJavaError):
        return str(error.java_exception.toString()).splitlines()[0]
    return first_line(error)


def log_started(url: str, symbols: list[str], settings: Settings) -> None:
    logger.info("live bars for %s from %s, checkpoint %s, every %s s", ",".join(symbols),
                redact(url), checkpoint_location(settings.live_checkpoint_uri),
                settings.live_trigger_seconds)
