"""Makes the market trade and hands every step to every connection.

Live mode: `rate` trades per second over all symbols, trade times from the wall clock.
Fast mode (`rate` 0): a chunk per symbol whenever every subscribed client can take more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

from binance_etl.replay.broadcast import Batch
from binance_etl.replay.connection import Connection
from binance_etl.replay.market import Market
from binance_etl.replay.options import FeedOptions
from binance_etl.replay.tradefile import TradeWriter

LIVE_TICK_S = 0.01
IDLE_POLL_S = 0.05


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Producer:
    def __init__(self, market: Market, options: FeedOptions,
                 connections: Callable[[], Collection[Connection]],
                 trade_log: TradeWriter | None = None) -> None:
        self.market = market
        self.options = options
        self._connections = connections
        self._log = trade_log
        self.paused = options.start_paused
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something changed (a subscription, a drained socket, resume): look again."""
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    def done(self) -> bool:
        """Every symbol reached `max_trades` or the end of its recording."""
        limit = self.options.max_trades
        return all(self.market.exhausted(symbol) or (
            limit is not None and self.market.tapes[symbol].produced >= limit)
            for symbol in self.market.symbols)

    async def run(self) -> None:
        if self.options.fast:
            await self._fast()
        else:
            await self._live()

    def step(self, counts: dict[str, int], start_ms: dict[str, int], end_ms: int) -> int:
        """Produce `counts[symbol]` trades per symbol and deliver them to every client."""
        batches: list[Batch] = []
        produced = 0
        limit = self.options.max_trades
        for symbol, count in counts.items():
            if limit is not None:
                count = min(count, limit - self.market.tapes[symbol].produced)
            if count <= 0:
                continue
            trades = self.market.produce(symbol, count, start_ms[symbol], end_ms)
            if trades:
                produced += len(trades)
                batches.append(Batch(symbol, trades, max(end_ms, trades[-1].time_ms)))
                if self._log is not None:
                    self._log.write(trades)
        if batches:
            for connection in list(self._connections()):
                connection.deliver(batches)
            if self._log is not None:
                self._log.flush()
        return produced

    async def _live(self) -> None:
        symbols = self.market.symbols
        per_symbol = self.options.rate / len(symbols)
        owed = dict.fromkeys(symbols, 0.0)
        last_ms = dict.fromkeys(symbols, now_ms())
        last = time.monotonic()
        while True:
            await asyncio.sleep(LIVE_TICK_S)
            now = time.monotonic()
            elapsed, last = now - last, now
            if self.paused:
                continue
            end_ms = now_ms()
            counts: dict[str, int] = {}
            for symbol in symbols:
                owed[symbol] += per_symbol * elapsed
                counts[symbol] = int(owed[symbol])
                owed[symbol] -= counts[symbol]
            self.step(counts, last_ms, end_ms)
            for symbol in symbols:
                if counts[symbol]:
                    last_ms[symbol] = end_ms

    def _ready(self) -> bool:
        subscribed = [c for c in self._connections()
                      if c.subscription.streams and not c.closing]
        return (not self.paused and bool(subscribed) and all(c.writable for c in subscribed)
                and not self.done())

    async def _fast(self) -> None:
        """Nothing is produced while nobody listens or while a subscriber's socket is full."""
        symbols = self.market.symbols
        counts = dict.fromkeys(symbols, self.options.chunk)
        last_ms = dict.fromkeys(symbols, now_ms())
        while True:
            if not self._ready():
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass
                continue
            end_ms = now_ms()
            self.step(counts, last_ms, end_ms)
            last_ms = dict.fromkeys(symbols, end_ms)
            await asyncio.sleep(0)  # lets the sockets drain and clients come and go
