"""The SparkSession of the batch: master from SPARK_MASTER, UTC, exact decimals, pinned driver.

With SPARK_REMOTE (`sc://host:port`) the session is a Spark Connect client instead: no JVM in
this process; the server (`etl.connect_server`, started with the same settings and the JDBC
driver) runs the work, and the SQL settings below are applied to the client's server-side
session all the same. A server that does not answer is one line, `SparkConnectUnreachable`.

The PostgreSQL JDBC driver comes from Maven Central through `spark.jars.packages` (cached in
the ivy folder after the first run), never from a path on one machine. Under `spark-submit`
the command line's `--master` and `--packages` win and are not overridden here.

A driver JVM started here maps the JVM class-data archive of `etl.jvmcache` when one exists
for this JDK and Spark (about half of the session's start is class loading).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from etl import jvmcache

logger = logging.getLogger(__name__)

POSTGRES_JDBC_PACKAGE = "org.postgresql:postgresql:42.7.8"
LOOPBACK_MASTERS = ("spark://127.0.0.1:", "spark://localhost:")
# A short batch job: the throughput collector beat the default G1 (measured; C1-only
# `-XX:TieredStopAtLevel=1` started faster but aggregated slower, so it is not used).
DRIVER_JAVA_OPTIONS = "-XX:+UseParallelGC"

# SQL settings the job relies on; they are runtime settings, so they are (re)applied to any
# session the job is handed, not only to sessions it builds itself.
SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # Without this, decimal(30,8) * decimal(30,8) is typed decimal(38,6): silently rounded.
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.ansi.enabled": "true",  # overflow raises instead of becoming NULL
    # Portable Parquet timestamps (pyarrow, Redshift COPY) instead of the legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

# Spark's status store keeps the last 1,000 jobs, stages and SQL executions for its web UI even
# with the UI off. A process that runs for hours with one SQL execution per micro-batch (the
# live query's driver, the Spark Connect server) keeps a few dozen instead: 1,000 executions
# are 17 minutes of one-second micro-batches, and their plan metrics were most of the live
# query's heap (measured after ten minutes: 130 MB in use after a full collection with the
# defaults, 88 MB with these).
STATUS_RETENTION = {
    "spark.ui.retainedJobs": "50",
    "spark.ui.retainedStages": "50",
    "spark.ui.retainedTasks": "1000",
    "spark.sql.ui.retainedExecutions": "50",
}


CONNECT_TIMEOUT_SECONDS = 10.0


class SparkConnectUnreachable(RuntimeError):
    """The Spark Connect server named by SPARK_REMOTE does not answer (a retry may succeed)."""


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (the JVM exists already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    master: str = "local[*]",
    *,
    app_name: str = "binance-etl",
    shuffle_partitions: int = 4,
    driver_memory: str = "1g",
    java_options: Sequence[str] = (),
    extra_conf: dict[str, str] | None = None,
    remote: str | None = None,
) -> SparkSession:
    """A session for the batch (or the tests: local[2], UI off); reuses an active one.

    `java_options`: the driver JVM's options beyond `driver_java_options()` (a JVM started
    here; under spark-submit the JVM exists already).

    `remote` (SPARK_REMOTE): a Spark Connect client session on that server instead; `master`
    and the JVM settings are then the server's business."""
    if remote:
        return connect_session(remote, app_name=app_name, shuffle_partitions=shuffle_partitions,
                               extra_conf=extra_conf)
    active = SparkSession.getActiveSession()
    if active is not None:
        return configure(active)
    with _no_exported_remote():
        return _in_process_session(master, app_name, shuffle_partitions, driver_memory,
                                   java_options, extra_conf)


@contextmanager
def _no_exported_remote() -> Iterator[None]:
    """pyspark's builder turns into a Spark Connect client (or refuses a master) when
    SPARK_REMOTE is in the process environment; the in-process session ignores it."""
    exported = os.environ.pop("SPARK_REMOTE", None)
    try:
        yield
    finally:
        if exported is not None:
            os.environ["SPARK_REMOTE"] = exported


def _in_process_session(master: str, app_name: str, shuffle_partitions: int,
                        driver_memory: str, java_options: Sequence[str],
                        extra_conf: dict[str, str] | None) -> SparkSession:
    builder = SparkSession.builder.appName(app_name)
    # Python workers (the live query's data source reads) run this interpreter, the one with
    # the project installed, on local and standalone executors alike.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
    if not under_spark_submit():
        if master.startswith("local") or master.startswith(LOOPBACK_MASTERS):
            # Keep the driver's own services on the loopback interface too.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.master(master)
            .config("spark.jars.packages", POSTGRES_JDBC_PACKAGE)
            .config("spark.driver.memory", driver_memory)
            .config("spark.driver.extraJavaOptions", driver_java_options(java_options))
        )
    builder = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.adaptive.enabled", "true")
    )
    if master.startswith("spark://"):
        # A standalone worker offers all its cores; a day needs only a couple of executors.
        builder = builder.config("spark.executor.memory", "1g").config("spark.cores.max", "2")
    for key, value in {**SQL_CONF, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    logger.info("spark session on %s (Spark %s)", session.sparkContext.master, session.version)
    return configure(session)


def driver_java_options(more: Sequence[str] = ()) -> str:
    """DRIVER_JAVA_OPTIONS, the options that map the class-data archive if it exists, `more`."""
    archive, note = jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS)
    if note:
        logger.info(note)
    return " ".join([DRIVER_JAVA_OPTIONS, *archive, *more])


def configure(session: SparkSession) -> SparkSession:
    """Apply the SQL settings the job's exactness depends on."""
    for key, value in SQL_CONF.items():
        session.conf.set(key, value)
    return session


def shown_remote(remote: str) -> str:
    """`sc://host:port` without Spark Connect's `/;name=value` parameters (a token may be one)."""
    parts = urlsplit(remote)
    return f"sc://{parts.netloc}"


def check_remote(remote: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raises SparkConnectUnreachable unless something accepts connections at `remote`'s port
    (the session's own first call would otherwise retry for minutes before failing)."""
    parts = urlsplit(remote)
    host, port = parts.hostname or "localhost", parts.port or 15002
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise SparkConnectUnreachable(
            f"spark connect server {shown_remote(remote)} is unreachable: {reason}"
            " (start one with `python -m etl.connect_server start`)"
        ) from None


def connect_session(
    remote: str,
    *,
    app_name: str = "binance-etl",
    shuffle_partitions: int = 4,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark Connect session on `remote` with the batch's SQL settings applied to it."""
    from pyspark.errors import PySparkException

    check_remote(remote)  # first: an unreachable server is the one line a user needs
    active = SparkSession.getActiveSession()
    if active is not None and not is_connect_session(active):
        raise RuntimeError("an in-process SparkSession is active: cannot also use SPARK_REMOTE")
    try:
        session = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
        conf = {**SQL_CONF, "spark.sql.shuffle.partitions": str(shuffle_partitions),
                "spark.sql.adaptive.enabled": "true", **(extra_conf or {})}
        for key, value in conf.items():
            session.conf.set(key, value)
        version = session.version
    except PySparkException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SparkConnectUnreachable(
            f"spark connect server {shown_remote(remote)} is unreachable: {first}"
        ) from error
    logger.info("spark connect session on %s (Spark %s)", shown_remote(remote), version)
    return session


def is_connect_session(session: SparkSession) -> bool:
    """True for a Spark Connect client session (no JVM in this process)."""
    return type(session).__module__.startswith("pyspark.sql.connect")
