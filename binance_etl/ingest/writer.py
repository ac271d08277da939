"""The batching writer: a thread that COPYs trades into PostgreSQL, idempotently.

The event loop hands over chunks of parsed trades (`submit`, never blocks); this thread merges
them into batches of at most BATCH_MAX_TRADES and writes each batch in one transaction.

Two ways to write a batch, both binary `COPY`:
- direct: `COPY` straight into `trades`. The fastest (PostgreSQL spends ~2.6 µs of CPU per row),
  but a batch holding a row that is already stored fails as a whole (unique violation);
- staged: `COPY` into a session temp table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`
  (~6.5 µs per row), which keeps one row however often a trade is written.
The id bookkeeping upstream hands each trade over once per run, so conflicts are rare (another
streamer on the same table, a batch retried after its commit was lost): the writer goes direct,
and when a batch conflicts it rolls back and writes it staged, staying staged for a while.
(`unnest` arrays measured ~36,000 rows/s, text COPY slower than binary.)

When the database is unreachable, the batch is kept and retried with capped back-off until it
commits: nothing handed over is dropped. Any other database error stops the writer loudly
(`failed`), with the number of trades at risk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date

import psycopg

from binance_etl.backoff import Backoff
from binance_etl.db import connect, redact
from binance_etl.ingest.trade import COLUMNS, Trade
from binance_etl.schema import ensure_partitions

logger = logging.getLogger(__name__)

_COLUMN_LIST = ", ".join(COLUMNS)
STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS trades_staging "
    "(symbol text, trade_id bigint, price numeric(30, 8), quantity numeric(30, 8), "
    "trade_time timestamptz, event_time timestamptz, is_buyer_maker boolean) "
    "ON COMMIT DELETE ROWS"
)
COPY_SQL = f"COPY trades_staging ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
INSERT_SQL = (
    f"INSERT INTO trades ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM trades_staging "
    "ON CONFLICT DO NOTHING"
)
COPY_TYPES = ["text", "int8", "numeric", "numeric", "timestamptz", "timestamptz", "bool"]
DIRECT_COPY_SQL = f"COPY trades ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)
STAGED_AFTER_CONFLICT = 50  # batches written staged after a conflict before trying direct again


@dataclass
class Chunk:
    """Trades in arrival order, with the event times (ms) of those that came from the stream."""

    trades: list[Trade] = field(default_factory=list)
    event_ms: list[int] = field(default_factory=list)


@dataclass
class WriterStats:
    committed: int = 0  # trades in committed batches (duplicates included)
    inserted: int = 0  # rows that were new to the table
    batches: int = 0
    retries: int = 0
    conflicts: int = 0  # direct batches that met stored rows and were rewritten staged
    lag_ms: Counter[int] = field(default_factory=Counter)  # event -> commit, per stream trade


class WriterFailed(RuntimeError):
    """The database refused a batch for a reason that retrying cannot fix."""


class BatchWriter:
    """Writes submitted chunks in bounded batches from a thread of its own."""

    def __init__(
        self,
        database_url: str,
        *,
        batch_max_trades: int = 5000,
        retry_max_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database_url = database_url
        self.batch_max_trades = batch_max_trades
        self.stats = WriterStats()
        self.failed: BaseException | None = None
        self.pending = 0  # trades handed over and not yet committed
        self._pending_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self._carry: Chunk | None = None
        self._conn: psycopg.Connection | None = None
        self._days: set[date] = set()
        self._staged_batches_left = 0
        self._backoff = Backoff(0.2, retry_max_seconds)
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trade-writer", daemon=True)

    # -- event loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, chunk: Chunk) -> None:
        """Hand a chunk over; returns at once."""
        if not chunk.trades:
            return
        with self._pending_lock:
            self.pending += len(chunk.trades)
        self._queue.put(chunk)

    def close(self, timeout: float | None = None) -> bool:
        """Write everything submitted so far, then stop; False if `timeout` ran out first."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Stop retrying (a second signal at shutdown); what is pending stays uncommitted."""
        self._stopping.set()
        self._queue.put(None)

    # -- writer thread ---------------------------------------------------------------------

    def _next_batch(self) -> tuple[Chunk | None, bool]:
        """Up to batch_max_trades trades from the queue (blocking for the first chunk)."""
        batch = Chunk()
        done = False
        while len(batch.trades) < self.batch_max_trades:
            chunk: Chunk | None
            if self._carry is not None:
                chunk, self._carry = self._carry, None
            else:
                try:
                    chunk = self._queue.get(block=not batch.trades)
                except queue.Empty:
                    break
            if chunk is None:
                done = True
                break
            room = self.batch_max_trades - len(batch.trades)
            if len(chunk.trades) > room:
                head = Chunk(chunk.trades[:room], [])
                tail = Chunk(chunk.trades[room:], [])
                # event_ms belong to stream trades, which come first in a chunk.
                head.event_ms = chunk.event_ms[:room]
                tail.event_ms = chunk.event_ms[room:]
                chunk, self._carry = head, tail
            batch.trades.extend(chunk.trades)
            batch.event_ms.extend(chunk.event_ms)
        return (batch if batch.trades else None), done

    def _run(self) -> None:
        closing = False
        try:
            while not (closing and self._carry is None and self._queue.empty()):
                batch, done = self._next_batch()
                closing = closing or done
                if batch is not None:
                    self._write_with_retries(batch)
        except BaseException as error:  # recorded for the event loop, which stops loudly
            self.failed = error
            logger.error("writer stopped: %s (%d trades not committed)", error, self.pending)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _write_with_retries(self, batch: Chunk) -> None:
        while True:
            try:
                self._write(batch)
                self._backoff.reset()
                return
            except RETRYABLE as error:
                self.stats.retries += 1
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if self._stopping.is_set():
                    raise WriterFailed(f"gave up retrying: {error}") from error
                delay = self._backoff.next_delay()
                logger.warning(
                    "database unavailable (%s); %d trades waiting, retrying in %.1fs",
                    str(error).strip().splitlines()[0] if str(error).strip() else type(error),
                    self.pending,
                    delay,
                )
                self._stopping.wait(delay)
            except psycopg.Error as error:
                raise WriterFailed(f"database refused a batch: {error}") from error

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # Autocommit: a direct COPY is one statement, atomic on its own, and saves the
            # COMMIT round trip (each round trip also waits for the GIL on return).
            conn = connect(self.database_url, autocommit=True, timeout=5)
            conn.execute(STAGING_DDL)
            self._conn = conn
            logger.info("writer connected to %s", redact(self.database_url))
        return self._conn

    def _write(self, batch: Chunk) -> None:
        conn = self._connection()
        trades = batch.trades
        days = {moment.date() for moment in {trade[4] for trade in trades}} - self._days
        if days:
            ensure_partitions(conn, days)
            self._days |= days
        if self._staged_batches_left > 0:
            self._staged_batches_left -= 1
            inserted = self._copy(conn, trades, staged=True)
        else:
            try:
                inserted = self._copy(conn, trades, staged=False)
            except psycopg.errors.UniqueViolation:
                self.stats.conflicts += 1
                self._staged_batches_left = STAGED_AFTER_CONFLICT
                inserted = self._copy(conn, trades, staged=True)
        now_ms = int(self._clock() * 1000)
        stats = self.stats
        stats.lag_ms.update(now_ms - ms for ms in batch.event_ms)
        stats.committed += len(trades)
        stats.inserted += inserted
        stats.batches += 1
        with self._pending_lock:
            self.pending -= len(trades)

    @staticmethod
    def _copy(conn: psycopg.Connection, trades: list[Trade], *, staged: bool) -> int:
        """COPY one batch and commit it; returns the number of new rows."""
        with conn.transaction() if staged else nullcontext(), conn.cursor() as cur:
            with cur.copy(COPY_SQL if staged else DIRECT_COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                write_row = copy.write_row
                for trade in trades:
                    write_row(trade)
            if staged:
                cur.execute(INSERT_SQL)
            return cur.rowcount


def lag_percentile(histogram: Counter[int], fraction: float) -> float | None:
    """The `fraction` quantile (0..1) of a {lag_ms: count} histogram."""
    histogram = Counter(dict(histogram))  # one C-level copy: the writer thread keeps adding
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = fraction * (total - 1)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return float(value)
    return float(max(histogram))
