"""The streamer: connections → parsed trades → id bookkeeping → batching writer, plus gap
recovery, back-pressure, periodic reporting and an orderly shutdown.

Everything but the database writes runs on one asyncio event loop; the hot path (one call per
frame, `_on_payload`) parses, checks the trade id against its symbol's frontier and appends to
the current chunk. Chunks go to the writer thread every few milliseconds or when full.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from binance_etl.backoff import Backoff
from binance_etl.db import connect, redact
from binance_etl.ingest.connection import StreamConnection
from binance_etl.ingest.gaps import SymbolGaps
from binance_etl.ingest.recovery import GapRecovery
from binance_etl.ingest.rest import BinanceRest, RestError
from binance_etl.ingest.stats import Counters, Summary, serve_metrics
from binance_etl.ingest.streams import stream_groups
from binance_etl.ingest.trade import FrameError, FrameParser, Trade
from binance_etl.ingest.writer import BatchWriter, Chunk, lag_percentile
from binance_etl.schema import drop_partitions_older_than, migrate
from binance_etl.settings import Settings

logger = logging.getLogger(__name__)

HANDOVER_MS = 20  # chunks go to the writer at least this often (bounded by BATCH_MAX_MS)


@dataclass(frozen=True)
class StreamerConfig:
    """What one streamer run needs; `from_settings` maps the project's settings onto it."""

    symbols: tuple[str, ...]
    database_url: str
    ws_url: str
    rest_url: str
    batch_max_trades: int = 5000
    batch_max_ms: int = 200
    max_buffered_trades: int = 250_000
    lookback_minutes: int = 60
    metrics_port: int | None = None
    silence_seconds: float = 60.0
    max_age_seconds: float = 23 * 3600.0
    reconnect_max_seconds: float = 30.0
    retention_days: int | None = None
    partitions_ahead_days: int = 3
    stats_interval: float = 5.0
    quiet_probe_seconds: float = 30.0
    streams_per_connection: int = 1024
    check_symbols: bool = True

    @classmethod
    def from_settings(
        cls, settings: Settings, database_url: str, **overrides: Any
    ) -> StreamerConfig:
        values: dict[str, Any] = {
            "symbols": tuple(settings.symbols),
            "database_url": database_url,
            "ws_url": settings.binance_ws_url,
            "rest_url": settings.binance_rest_url,
            "batch_max_trades": settings.batch_max_trades,
            "batch_max_ms": settings.batch_max_ms,
            "max_buffered_trades": settings.max_buffered_trades,
            "lookback_minutes": settings.gap_lookback_minutes,
            "metrics_port": settings.metrics_port,
            "silence_seconds": settings.ws_silence_seconds,
            "max_age_seconds": settings.ws_max_age_seconds,
            "reconnect_max_seconds": settings.reconnect_max_seconds,
            "retention_days": settings.trades_retention_days,
            "partitions_ahead_days": settings.partitions_ahead_days,
        }
        values.update(overrides)
        return cls(**values)


class UnknownSymbols(SystemExit):
    def __init__(self, symbols: list[str], rest_url: str) -> None:
        super().__init__(f"unknown symbol(s) on {rest_url}: {', '.join(symbols)}")


class Streamer:
    """One run of the real-time ingest (see module docstring)."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.gaps = {symbol: SymbolGaps() for symbol in config.symbols}
        self._gaps_get = self.gaps.get
        self._batch_max = config.batch_max_trades
        self.parser = FrameParser()
        self.writer = BatchWriter(config.database_url, batch_max_trades=config.batch_max_trades)
        self.rest = BinanceRest(config.rest_url)
        self.recovery = GapRecovery(self.rest, self.gaps, self._accept_rest, self._wait_for_room)
        self.connections: list[StreamConnection] = []
        self._chunk = Chunk()
        self._stop = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._paused = False
        self._signals = 0
        self._started = time.monotonic()
        self._malformed_logged: set[str] = set()

    # -- the hot path ----------------------------------------------------------------------

    def _on_payload(self, payload: memoryview) -> bool:
        """One frame: parse, check its id, append to the chunk. False: not a trade frame."""
        parser = self.parser
        try:
            trade = parser.parse(payload)
        except FrameError as error:
            self._malformed(error, payload)
            return True
        if trade is None:
            return False
        counters = self.counters
        counters.received += 1
        state = self._gaps_get(trade[0])
        if state is None:
            counters.foreign += 1
            return True
        if state.catch_up:
            state.catch_up = False  # the stream is live again: jumps are seen as gaps
        trade_id = trade[1]
        last = state.last_id
        if last is not None and trade_id == last + 1:
            state.last_id = trade_id
        elif state.observe(trade_id):
            if state.missing:
                self.recovery.wake(trade[0])
        else:
            counters.duplicates += 1
            return True
        chunk = self._chunk
        chunk.trades.append(trade)
        chunk.event_ms.append(parser.event_ms)
        if len(chunk.trades) >= self._batch_max:
            self._hand_over()
        return True

    def _malformed(self, error: FrameError, payload: memoryview) -> None:
        self.counters.malformed += 1
        reason = str(error).split(" ")[0]
        if reason not in self._malformed_logged:  # once per kind, with a sample
            self._malformed_logged.add(reason)
            sample = bytes(payload[:300]).decode("utf-8", "replace")
            logger.warning("skipping malformed frame (%s); sample: %s", error, sample)

    def _hand_over(self) -> None:
        chunk = self._chunk
        if chunk.trades:
            self._chunk = Chunk()
            self.counters.accepted += len(chunk.trades)
            self.writer.submit(chunk)
            self._check_pressure()

    def _accept_rest(self, trades: list[Trade]) -> None:
        self.counters.accepted += len(trades)
        self.writer.submit(Chunk(trades, []))
        self._check_pressure()

    # -- back-pressure ---------------------------------------------------------------------

    def _check_pressure(self) -> None:
        buffered = self.writer.pending + len(self._chunk.trades)
        limit = self.config.max_buffered_trades
        if not self._paused and buffered >= limit:
            self._paused = True
            self._room.clear()
            logger.warning(
                "%d trades waiting for the database (limit %d): pausing reads; "
                "gap recovery will fetch what the stream sends meanwhile", buffered, limit,
            )
            for connection in self.connections:
                connection.set_paused(True)
        elif self._paused and buffered <= limit // 2:
            self._paused = False
            self._room.set()
            logger.info("database caught up (%d waiting): reading again", buffered)
            for connection in self.connections:
                connection.set_paused(False)

    async def _wait_for_room(self) -> None:
        await self._room.wait()

    # -- connections -----------------------------------------------------------------------

    def _on_connected(self, symbols: tuple[str, ...], overlapped: bool) -> None:
        """After a reconnect: fetch from REST whatever came after the last id we hold.

        Not after a renewal whose old connection stayed up until the new one was connected:
        the overlap already guarantees continuity.
        """
        if overlapped:
            return
        for symbol in symbols:
            state = self.gaps[symbol]
            if state.last_id is not None:
                state.catch_up = True
                self.recovery.wake(symbol)

    # -- start-up --------------------------------------------------------------------------

    async def _check_symbols(self) -> None:
        try:
            unknown = await self.rest.unknown_symbols(list(self.config.symbols))
        except (RestError, httpx.HTTPError) as error:
            logger.warning(
                "exchangeInfo not reachable (%s); symbols checked for syntax only", error
            )
            return
        if unknown:
            raise UnknownSymbols(unknown, self.config.rest_url)

    async def _prepare_database_with_retries(self, patience: float = 30.0) -> None:
        """The database may still be starting (compose, reboot): retry for a while, then stop
        with one line."""
        backoff = Backoff(0.5, 5.0)
        deadline = time.monotonic() + patience
        while True:
            try:
                await asyncio.to_thread(self._prepare_database)
                return
            except psycopg.OperationalError as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0].strip()
                if time.monotonic() > deadline or self._stop.is_set():
                    raise SystemExit(
                        f"database unreachable: {redact(self.config.database_url)}: {reason}"
                    ) from None
                delay = backoff.next_delay()
                logger.warning("database not reachable yet (%s); retrying in %.1fs", reason, delay)
                await asyncio.sleep(delay)

    def _prepare_database(self) -> None:
        """Migrate, apply retention, and load each symbol's last stored id and recent holes."""
        config = self.config
        with connect(config.database_url, autocommit=True) as conn:
            migrate(conn, ahead_days=config.partitions_ahead_days)
            if config.retention_days:
                drop_partitions_older_than(conn, config.retention_days)
            if config.lookback_minutes <= 0:
                return
            since = datetime.now(UTC) - timedelta(minutes=config.lookback_minutes)
            rows = conn.execute(
                """
                SELECT symbol, trade_id, next_id FROM (
                    SELECT symbol, trade_id,
                           lead(trade_id) OVER (PARTITION BY symbol ORDER BY trade_id) AS next_id
                    FROM trades WHERE symbol = ANY(%s) AND trade_time >= %s
                ) ids
                WHERE next_id IS NULL OR next_id > trade_id + 1
                """,
                (list(config.symbols), since),
            ).fetchall()
        for symbol, trade_id, next_id in rows:
            state = self.gaps[symbol]
            if next_id is None:
                state.last_id = trade_id
                state.catch_up = True
            else:
                state.add_missing(trade_id + 1, next_id - 1)
        for symbol, state in self.gaps.items():
            if state.last_id is not None:
                logger.info(
                    "%s: resuming after stored id %d (%d ids missing in the last %d min)",
                    symbol, state.last_id, state.missing_count, config.lookback_minutes,
                )

    # -- run -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("stop requested: closing streams, flushing what was received")
            self._stop.set()
        else:
            logger.warning("second stop request: abandoning the flush")
            self.writer.abort()

    async def run(self, duration: float | None = None, install_signals: bool = True) -> Summary:
        config = self.config
        loop = asyncio.get_running_loop()
        if install_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_stop)
        metrics = None
        try:
            if config.check_symbols:
                await self._check_symbols()
            await self._prepare_database_with_retries()
            self.writer.start()
            if config.metrics_port:
                metrics = serve_metrics(self, config.metrics_port)
            self._started = time.monotonic()
            for symbol, state in self.gaps.items():
                if state.missing or state.catch_up:
                    self.recovery.wake(symbol)
            self.connections = [
                StreamConnection(
                    group,
                    self._on_payload,
                    self._on_connected,
                    silence_seconds=config.silence_seconds,
                    max_age_seconds=config.max_age_seconds,
                    reconnect_max_seconds=config.reconnect_max_seconds,
                )
                for group in stream_groups(
                    config.ws_url, config.symbols, config.streams_per_connection
                )
            ]
            tasks = [asyncio.create_task(c.run(), name=c.name) for c in self.connections]
            tasks.append(asyncio.create_task(self._tick(), name="handover"))
            tasks.append(asyncio.create_task(self._report(), name="report"))
            tasks.append(asyncio.create_task(self._probe_quiet(), name="probe"))
            try:
                await asyncio.wait_for(self._stop.wait(), duration)
            except TimeoutError:
                logger.info("--duration of %ss reached: stopping", duration)
            await self._shutdown(tasks)
        finally:
            if install_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
            if metrics is not None:
                server, _thread = metrics
                server.shutdown()  # type: ignore[attr-defined]
            await self.rest.aclose()
        if self.writer.failed is not None:
            raise SystemExit(
                f"writer failed: {self.writer.failed}; {self.writer.pending} trades not committed"
            )
        return self.summary()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.stop()  # stops reading at once
        await self.recovery.close()
        for task in tasks:
            if task.get_name() in ("handover", "report", "probe"):
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                logger.error("task failed during shutdown: %r", result)
        self._hand_over()
        waiting = self.writer.pending
        if waiting:
            logger.info("flushing %d trades", waiting)
        await asyncio.to_thread(self.writer.close)
        left = sum(state.missing_count for state in self.gaps.values())
        if left:
            logger.warning(
                "%d missing trade ids not yet fetched; the next start fetches them", left
            )

    async def _tick(self) -> None:
        interval = min(self.config.batch_max_ms, HANDOVER_MS) / 1000
        parser = self.parser
        counters = self.counters
        while True:
            await asyncio.sleep(interval)
            if self._chunk.trades:  # receipt lag of the newest trade, sampled each tick
                counters.lag_ms_sum += int(time.time() * 1000) - parser.trade_ms
                counters.lag_samples += 1
            self._hand_over()
            self._check_pressure()
            if self.writer.failed is not None:
                logger.error("stopping: the writer failed")
                self._stop.set()
                return

    async def _probe_quiet(self) -> None:
        """Ask REST about symbols whose stream said nothing for a while.

        A gap is seen when the next id arrives; if the lost frame was the symbol's last trade
        for a long time (or the symbol went quiet), only REST can tell. Probes are the
        lowest-priority REST use: skipped while more than half the weight budget is spent.
        """
        seen = {symbol: state.last_id for symbol, state in self.gaps.items()}
        while True:
            await asyncio.sleep(self.config.quiet_probe_seconds)
            if self._paused or self.rest.used_weight > self.rest.weight_limit // 2:
                continue
            for symbol, state in self.gaps.items():
                if state.last_id is not None and state.last_id == seen[symbol]:
                    state.catch_up = True
                    self.recovery.wake(symbol)
                seen[symbol] = state.last_id

    async def _report(self) -> None:
        previous = self.writer.stats.committed
        previous_at = time.monotonic()
        while True:
            await asyncio.sleep(self.config.stats_interval)
            now = time.monotonic()
            committed = self.writer.stats.committed
            counters = self.counters
            lag = counters.lag_ms_sum / counters.lag_samples if counters.lag_samples else 0.0
            counters.lag_ms_sum = counters.lag_samples = 0
            found = sum(s.found for s in self.gaps.values())
            filled = sum(s.filled for s in self.gaps.values())
            logger.info(
                "%.0f trades/s committed, lag %.0f ms, queue %d, gaps found %d filled %d, "
                "duplicates %d, malformed %d",
                (committed - previous) / (now - previous_at), lag,
                self.writer.pending + len(self._chunk.trades), found, filled,
                counters.duplicates, counters.malformed,
            )
            previous, previous_at = committed, now

    def summary(self) -> Summary:
        stats = self.writer.stats
        return Summary(
            seconds=time.monotonic() - self._started,
            received=self.counters.received,
            accepted=self.counters.accepted,
            duplicates=self.counters.duplicates,
            malformed=self.counters.malformed,
            committed=stats.committed,
            inserted=stats.inserted,
            uncommitted=self.writer.pending + len(self._chunk.trades),
            gaps_found=sum(s.found for s in self.gaps.values()),
            gaps_filled=sum(s.filled for s in self.gaps.values()),
            gaps_lost=sum(s.abandoned for s in self.gaps.values()),
            still_missing=sum(s.missing_count for s in self.gaps.values()),
            rest_trades=self.recovery.accepted,
            connects=sum(c.connects for c in self.connections),
            reconnects=sum(c.drops for c in self.connections),
            renewals=sum(c.renewals for c in self.connections),
            watchdog_replacements=sum(c.watchdog_kills for c in self.connections),
            db_retries=stats.retries,
            lag_p50_ms=lag_percentile(stats.lag_ms, 0.50),
            lag_p99_ms=lag_percentile(stats.lag_ms, 0.99),
        )
