"""Gap recovery: fetch missing trade ids from REST, one task per symbol with work to do.

Work comes from `SymbolGaps`: bounded missing ranges (a jump inside the stream, holes found at
start-up) and an open-ended catch-up after every (re)connect and at start-up (everything after
the last accepted id, until REST has nothing newer). Fetched trades go through the same
`observe` as stream trades, so a trade is handed to the writer once however it arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from binance_etl.ingest.gaps import SymbolGaps
from binance_etl.ingest.rest import PAGE_LIMIT, BinanceRest, RestError
from binance_etl.ingest.trade import Trade

logger = logging.getLogger(__name__)


class GapRecovery:
    """Runs REST fills for symbols whose `SymbolGaps` have work."""

    def __init__(
        self,
        rest: BinanceRest,
        gaps: dict[str, SymbolGaps],
        accept: Callable[[list[Trade]], None],
        wait_for_room: Callable[[], Awaitable[None]],
        *,
        concurrency: int = 2,
        retry_seconds: float = 5.0,
    ) -> None:
        self.rest = rest
        self.gaps = gaps
        self._accept = accept
        self._wait_for_room = wait_for_room
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retry_seconds = retry_seconds
        self.fetched = 0  # trades received from REST
        self.accepted = 0  # of those, new ones handed to the writer
        self.errors = 0

    def wake(self, symbol: str) -> None:
        """Make sure a task works on `symbol` (no-op when one already does)."""
        task = self._tasks.get(symbol)
        if task is None or task.done():
            self._tasks[symbol] = asyncio.create_task(self._work(symbol), name=f"gaps-{symbol}")

    def busy(self) -> bool:
        return any(not task.done() for task in self._tasks.values())

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _work(self, symbol: str) -> None:
        state = self.gaps[symbol]
        while (request := state.next_request(PAGE_LIMIT)) is not None:
            await self._wait_for_room()
            from_id, limit = request
            try:
                async with self._limit:
                    trades = await self.rest.trades_from(symbol, from_id, limit)
            except RestError as error:
                self.errors += 1
                logger.warning(
                    "gap recovery %s from id %d failed (%s); retrying in %.0fs",
                    symbol, from_id, error, self._retry_seconds,
                )
                await asyncio.sleep(self._retry_seconds)
                continue
            self._apply(symbol, state, from_id, limit, trades)

    def _apply(
        self, symbol: str, state: SymbolGaps, from_id: int, limit: int, trades: list[Trade]
    ) -> None:
        bounded = bool(state.missing) and state.missing[0][0] == from_id
        self.fetched += len(trades)
        first_returned = trades[0].trade_id if trades else None
        if bounded and (first_returned is None or first_returned > from_id):
            # The server no longer has these ids (or never had them): say so, do not loop.
            end = from_id + limit - 1 if first_returned is None else first_returned - 1
            lost = state.abandon(from_id, end)
            if lost:
                logger.error(
                    "gap recovery %s: ids %d..%d not available from REST; %d trade(s) lost",
                    symbol, from_id, end, lost,
                )
        new = [trade for trade in trades if state.observe(trade.trade_id)]
        if new:
            self.accepted += len(new)
            self._accept(new)
        if not bounded and len(trades) < limit:
            state.catch_up = False  # REST has nothing newer than what we hold
            logger.info("gap recovery %s: caught up at id %s", symbol, state.last_id)
