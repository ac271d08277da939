"""The SparkSession of the batch: master from SPARK_MASTER, UTC, exact decimals, pinned driver.

The PostgreSQL JDBC driver comes from Maven Central through `spark.jars.packages` (cached in
the ivy folder after the first run), never from a path on one machine. Under `spark-submit`
the command line's `--master` and `--packages` win and are not overridden here.

A driver JVM started here maps the JVM class-data archive of `etl.jvmcache` when one exists
for this JDK and Spark (about half of the session's start is class loading).
"""

from __future__ import annotations

import logging
import os
import sys

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


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (the JVM exists already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    master: str = "local[*]",
    *,
    app_name: str = "binance-etl",
    shuffle_partitions: int = 4,
    driver_memory: str = "1g",
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A session for the batch (or the tests: local[2], UI off); reuses an active one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return configure(active)
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
            .config("spark.driver.extraJavaOptions", driver_java_options())
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


def driver_java_options() -> str:
    """DRIVER_JAVA_OPTIONS, plus the options that map the class-data archive if it exists."""
    extra, note = jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS)
    if note:
        logger.info(note)
    return " ".join([DRIVER_JAVA_OPTIONS, *extra])


def configure(session: SparkSession) -> SparkSession:
    """Apply the SQL settings the job's exactness depends on."""
    for key, value in SQL_CONF.items():
        session.conf.set(key, value)
    return session
