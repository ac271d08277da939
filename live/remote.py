"""The live query through a Spark Connect server (SPARK_REMOTE), supervised.

Over Spark Connect the query runs on the server: the Python data source is registered there
(its planner and reads run in the server's Python workers), `foreachBatch(BarsSink)` is pickled
and called in a Python process of the server (`pyspark.sql.connect.streaming.worker.
foreach_batch_worker`, the server's interpreter, which has the project installed), and the
checkpoint is written by the server, on the server's file system. This process only holds the
query's handle. When the server goes away (a crash, a restart) the handle is gone with the
query; the supervisor below logs one line, waits for the server with capped back-off for at
most `patience` seconds, then starts the query again on a new session: Spark resumes it from
its checkpoint, and the sink's coverage check skips a batch it had already applied, so no trade
is lost or counted twice. Not back within `patience`: one line and exit 1.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
from pyspark.errors import PySparkException
from pyspark.errors.exceptions.connect import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from binance_etl.settings import Settings
from etl.spark import SparkConnectUnreachable, build_session, check_remote, shown_remote
from live.sink import BarsSink

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 300.0  # how long an unreachable server is waited for before giving up
BACKOFF_SECONDS = (0.5, 5.0)  # first and longest wait between two attempts
# The client's own retries of a failed call (pyspark's default waits 10+ minutes, silently):
# a few seconds, then the supervisor takes over with its own log line and patience.
CLIENT_RETRIES = 4

# pyspark warns on stderr before raising; the supervisor's own line says it better
warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")

StartQuery = Callable[[SparkSession, str, list[str], Settings, BarsSink], StreamingQuery]


class ServerLost(Exception):
    """The Spark Connect server stopped answering, or lost the query (a restart)."""


def first_line(error: BaseException) -> str:
    """One line for a log: a broken channel's gRPC status, else the message's first line."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, grpc.RpcError) and hasattr(seen, "code"):
            call: Any = seen
            return f"{call.code().name}: {call.details()}"
        seen = seen.__cause__ or seen.__context__
    text = str(error).strip()
    status = re.search(r"status = StatusCode\.(\w+)", text)
    if status:  # pyspark's wrapping of a gRPC error prints the call object first
        details = re.search(r'details = "([^"]*)"', text)
        return f"{status.group(1)}: {details.group(1) if details else ''}".rstrip(": ")
    return text.splitlines()[0] if text else type(error).__name__


def session_remote(remote: str, checkpoint: str) -> str:
    """SPARK_REMOTE with a session id of its own for this checkpoint (unless it names one).

    A client that died (kill -9) leaves its query running in its server-side session until
    the session times out (an hour by default), holding the checkpoint; the restarted client
    joins the same session, finds that query and stops it before starting its own."""
    if "session_id=" in remote:
        return remote
    session_id = uuid.uuid5(uuid.NAMESPACE_URL, f"binance-etl-live:{checkpoint}")
    base = remote if urlsplit(remote).path.startswith("/;") else remote.rstrip("/") + "/"
    return f"{base};session_id={session_id}"


def connect(settings: Settings, checkpoint: str) -> SparkSession:
    """The live query's client session on SPARK_REMOTE, with short client-side retries."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    spark = build_session(settings.spark_master,
                          remote=session_remote(settings.spark_remote or "", checkpoint),
                          app_name="binance-etl-live", shuffle_partitions=2)
    client: Any = spark
    client.client.set_retry_policies([DefaultPolicy(max_retries=CLIENT_RETRIES)])
    # Not released on stop: a released session id cannot be used again on that server.
    client.release_session_on_close = False
    for query in spark.streams.active:
        logger.warning("stopping the query %s (id %s) left running in this checkpoint's session "
                       "by a previous client", query.name, query.id)
        query.stop()
    return spark


def release(spark: SparkSession | None) -> None:
    """Forget a client session (best effort: its server may be gone)."""
    if spark is not None:
        spark.stop()


class Progress:
    """Micro-batches seen through the query's progress reports (the sink's own counters live
    in the server's Python process)."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}

    def note(self, query: StreamingQuery, every: bool = False) -> None:
        """The last progress report (polled each second), or all the server still keeps."""
        reports: list[Any] = list(query.recentProgress) if every else [query.lastProgress]
        for report in reports:
            if report is not None:  # a StreamingQueryProgress
                self.rows[int(report.batchId)] = int(report.numInputRows)

    def summary(self) -> str:
        last = max(self.rows) if self.rows else None
        return (f"live bars: batches {len(self.rows)}, trades {sum(self.rows.values())}, "
                f"last_batch_id {last} (through spark connect: as the query's progress "
                "reports tell; the sink's own lines are in the server's log)")


def watch(query: StreamingQuery, stop: threading.Event, deadline: float | None,
          progress: Progress) -> BaseException | None:
    """Wait until SIGTERM, the deadline or the query's end; stop it; its failure, if any.
    Raises ServerLost when the server stops answering or the query vanished with it."""
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            ended = query.awaitTermination(1)
            progress.note(query)
            if ended:
                failure = query.exception()
                if failure is None:  # nobody here stopped it: its server did (shutdown)
                    raise ServerLost("the query was stopped by the server")
                return failure
        progress.note(query, every=True)
        failure = query.exception()
        query.stop()
        return failure
    except StreamingQueryException as failure:
        return failure
    except PySparkException as error:
        raise ServerLost(first_line(error)) from error
    except grpc.RpcError as error:  # the channel broke outside the client's retries
        raise ServerLost(first_line(error)) from error


def start(settings: Settings, url: str, symbols: list[str], start_query: StartQuery,
          checkpoint: str) -> tuple[SparkSession, StreamingQuery]:
    """A new session and the query started on it; SparkConnectUnreachable while the server is
    down or not ready yet (other errors are the query's own and are raised)."""
    spark = None
    try:
        spark = connect(settings, checkpoint)
        return spark, start_query(spark, url, symbols, settings, BarsSink(url))
    except SparkConnectUnreachable:
        raise
    except PySparkException as error:
        release(spark)
        remote = settings.spark_remote or ""
        check_remote(remote, timeout=2.0)  # raises SparkConnectUnreachable if it went away
        raise error from None


def run_remote(settings: Settings, url: str, symbols: list[str], start_query: StartQuery, *,
               checkpoint: str, stop: threading.Event, deadline: float | None,
               patience: float) -> int:
    """Run the query through SPARK_REMOTE until SIGTERM/--duration; 0, or 1 when the query
    failed or the server stayed away longer than `patience` seconds."""
    remote = shown_remote(settings.spark_remote or "")
    progress = Progress()
    waiting_since: float | None = None
    pause = BACKOFF_SECONDS[0]
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        try:
            spark, query = start(settings, url, symbols, start_query, checkpoint)
        except SparkConnectUnreachable as error:
            now = time.monotonic()
            if waiting_since is None:
                waiting_since = now
                logger.warning("%s; waiting for it (up to %.0f s)", error, patience)
            if now - waiting_since >= patience:
                logger.error("spark connect server %s did not come back within %.0f s: giving "
                             "up (the checkpoint is kept; a restart resumes from it)", remote,
                             patience)
                return 1
            stop.wait(min(pause, max(0.0, waiting_since + patience - now)))
            pause = min(pause * 2, BACKOFF_SECONDS[1])
            continue
        if waiting_since is not None:
            logger.info("spark connect server %s is back after %.0f s: the query resumes from "
                        "its checkpoint", remote, time.monotonic() - waiting_since)
        else:
            logger.info("live bars for %s through spark connect %s, checkpoint %s (on the "
                        "server), every %s s", ",".join(symbols), remote,
                        checkpoint, settings.live_trigger_seconds)
        waiting_since, pause = None, BACKOFF_SECONDS[0]
        try:
            failure = watch(query, stop, deadline, progress)
        except ServerLost as lost:
            waiting_since = time.monotonic()
            logger.warning("spark connect server %s lost the live query (%s): reconnecting, "
                           "then resuming from the checkpoint", remote, lost)
            release(spark)
            continue
        release(spark)
        if failure is not None:
            logger.error("the live query failed: %s", first_line(failure))
            return 1
        break
    print(progress.summary(), flush=True)
    return 0
