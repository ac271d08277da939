"""The market the feed serves: which trades happened, per symbol, in order.

A `Market` is fed by a source per symbol — a seeded generator
(`binance_etl.replay.generator`) or a recorded trade file (`binance_etl.replay.tradefile`) —
and keeps what it produced on a tape, so that REST
gap recovery and tests can ask for any trade it made ("which trades did the market produce
for symbol S").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Trade(NamedTuple):
    """One spot trade as Binance reports it. `price`/`quantity` carry exactly eight places.

    A NamedTuple rather than a dataclass: the feed creates hundreds of thousands per second."""

    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    time_ms: int
    is_buyer_maker: bool

    @property
    def trade_time(self) -> datetime:
        """`time_ms` as an aware UTC datetime (exact: no float on the way)."""
        return EPOCH + timedelta(milliseconds=self.time_ms)


class TradeSource(Protocol):
    """Where a symbol's next trades come from."""

    @property
    def next_id(self) -> int: ...

    def generate(self, count: int, start_ms: int, end_ms: int) -> list[Trade]: ...


class RecordedSource:
    """Replays recorded trades of one symbol in order, keeping their ids and times."""

    def __init__(self, trades: Iterable[Trade]) -> None:
        self._trades = list(trades)
        self._pos = 0

    @property
    def next_id(self) -> int:
        if self._pos < len(self._trades):
            return self._trades[self._pos].trade_id
        return self._trades[-1].trade_id + 1 if self._trades else 1

    @property
    def remaining(self) -> int:
        return len(self._trades) - self._pos

    def generate(self, count: int, start_ms: int, end_ms: int) -> list[Trade]:
        chunk = self._trades[self._pos : self._pos + max(count, 0)]
        self._pos += len(chunk)
        return chunk


class Tape:
    """The trades one symbol produced, in id order; the oldest are dropped past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._trades: list[Trade] = []
        self.first_id: int | None = None  # id of _trades[0]
        self.produced = 0

    def extend(self, trades: list[Trade]) -> None:
        if not trades:
            return
        if self.first_id is None:
            self.first_id = trades[0].trade_id
        self._trades.extend(trades)
        self.produced += len(trades)
        excess = len(self._trades) - self.limit
        # Trim in large steps so that trimming stays amortised O(1) per trade.
        if excess > max(self.limit // 4, 1):
            del self._trades[:excess]
            self.first_id = self._trades[0].trade_id

    @property
    def last_id(self) -> int | None:
        return self._trades[-1].trade_id if self._trades else None

    def __len__(self) -> int:
        return len(self._trades)

    def from_id(self, from_id: int, limit: int) -> list[Trade]:
        """Up to `limit` trades with id >= from_id (from the oldest kept when it is older)."""
        if self.first_id is None:
            return []
        start = max(from_id - self.first_id, 0)
        return self._trades[start : start + limit]

    def between(self, start_ms: int, end_ms: int) -> list[Trade]:
        """Kept trades with start_ms <= time < end_ms (times never decrease along the tape)."""
        low = bisect_left(self._trades, start_ms, key=lambda trade: trade.time_ms)
        high = bisect_left(self._trades, end_ms, lo=low, key=lambda trade: trade.time_ms)
        return self._trades[low:high]

    def before(self, time_ms: int) -> Trade | None:
        """The last kept trade before `time_ms`."""
        index = bisect_left(self._trades, time_ms, key=lambda trade: trade.time_ms)
        return self._trades[index - 1] if index else None

    @property
    def known_from_ms(self) -> int | None:
        """The first minute whose trades the tape holds in full: the first trade's minute, or
        the next one once older trades were dropped."""
        if not self._trades:
            return None
        first = self._trades[0].time_ms
        minute = first - first % 60_000
        return minute if self.produced == len(self._trades) else minute + 60_000

    def recent(self, limit: int) -> list[Trade]:
        return self._trades[-limit:] if limit > 0 else []


class Market:
    """All symbols' sources and tapes. Single-threaded: used from the feed's event loop."""

    def __init__(self, sources: dict[str, TradeSource], history_limit: int = 500_000) -> None:
        if not sources:
            raise ValueError("a market needs at least one symbol")
        self.sources = sources
        self.tapes = {symbol: Tape(history_limit) for symbol in sources}

    @property
    def symbols(self) -> list[str]:
        return list(self.sources)

    def produce(self, symbol: str, count: int, start_ms: int, end_ms: int) -> list[Trade]:
        """The symbol's next `count` trades (fewer when a recording runs out), taped."""
        trades = self.sources[symbol].generate(count, start_ms, end_ms)
        self.tapes[symbol].extend(trades)
        return trades

    def exhausted(self, symbol: str) -> bool:
        source = self.sources[symbol]
        return isinstance(source, RecordedSource) and source.remaining == 0

    def trades(self, symbol: str, from_id: int | None = None, limit: int = 1000) -> list[Trade]:
        tape = self.tapes[symbol]
        if from_id is None:
            return tape.recent(limit)
        return tape.from_id(from_id, limit)

    def iter_all(self, symbol: str) -> Iterator[Trade]:
        tape = self.tapes[symbol]
        if tape.first_id is not None:
            yield from tape.from_id(tape.first_id, len(tape))
