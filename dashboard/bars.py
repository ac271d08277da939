"""`GET /api/bars`: its parameters checked (pure), and the bars from the right source.

Warehouse facts where the symbol's day is loaded, live `bars_1m` otherwise (design contract).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import orjson

from binance_etl.settings import SYMBOL_RE
from dashboard.queries import Database, live_bars, warehouse_bars, warehouse_version


class BadRequest(ValueError):
    """A request the API refuses with HTTP 400; the message is the one-line reason."""


@dataclass(frozen=True)
class BarsQuery:
    symbol: str
    start: datetime
    end: datetime


def parse_time(name: str, value: str | None) -> datetime:
    """ISO 8601; an explicit offset is converted to UTC, a time without one is taken as UTC."""
    if value is None or not value.strip():
        raise BadRequest(f"{name} is required (ISO 8601 UTC, e.g. 2025-09-10T04:00:00Z)")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name} {text[:40]!r} is not an ISO 8601 time (e.g. 2025-09-10T04:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_bars_query(
    args: dict[str, str], symbols: list[str], max_range: timedelta
) -> BarsQuery:
    """The checked parameters, or BadRequest with the first problem found."""
    raw_symbol = (args.get("symbol") or "").strip()
    if not raw_symbol:
        raise BadRequest("symbol is required, e.g. symbol=BTCUSDT")
    symbol = raw_symbol.upper()
    if not SYMBOL_RE.match(symbol):
        raise BadRequest(f"malformed symbol {raw_symbol[:40]!r}: letters and digits, e.g. BTCUSDT")
    if symbol not in symbols:
        raise BadRequest(f"unknown symbol {symbol!r}: this dashboard serves {', '.join(symbols)}")
    start = parse_time("start", args.get("start"))
    end = parse_time("end", args.get("end"))
    if end <= start:
        raise BadRequest(f"end {end:%Y-%m-%dT%H:%M:%SZ} is not after start "
                         f"{start:%Y-%m-%dT%H:%M:%SZ}")
    if end - start > max_range:
        raise BadRequest(f"range of {end - start} is longer than the maximum of "
                         f"{max_range.days} day(s) (DASHBOARD_MAX_RANGE_DAYS)")
    return BarsQuery(symbol, start, end)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def days_touched(start: datetime, end: datetime) -> list[datetime]:
    """The UTC midnights of every day that [start, end) touches."""
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    return [day_start(first + timedelta(days=n)) for n in range((last - first).days + 1)]


class FactsCache:
    """The warehouse facts' JSON per (symbol, start, end), reused while the range's token (see
    `queries.WAREHOUSE_VERSION_SQL`) is unchanged: a day's facts change only when the batch
    reloads it. Least recently used entries go first past `max_bytes`."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, datetime, datetime], tuple[str, str]] = \
            OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, datetime, datetime], token: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != token:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, datetime, datetime], token: str, facts: str) -> None:
        if len(facts) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[key] = (token, facts)
            self._bytes += len(facts)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)


def fetch_bars_json(
    warehouse: Database, raw: Database, query: BarsQuery, cache: FactsCache | None = None
) -> bytes:
    """The bars of [start, end) as the JSON array of the contract, oldest first."""
    day_starts = days_touched(query.start, query.end)
    key = (query.symbol, query.start, query.end)
    loaded, token = warehouse_version(warehouse, query.symbol, query.start, query.end,
                                      day_starts)
    facts = "[]"
    if loaded:
        cached = cache.get(key, token) if cache is not None else None
        if cached is None:
            cached = warehouse_bars(warehouse, query.symbol, query.start, query.end)
            if cache is not None:
                cache.put(key, token, cached)
        facts = cached
    if len(loaded) == len(day_starts):
        return facts.encode()
    live = live_bars(raw, query.symbol, query.start, query.end, loaded)
    if facts == "[]":
        return live.encode()
    if live == "[]":
        return facts.encode()
    merged = orjson.loads(facts) + orjson.loads(live)
    merged.sort(key=lambda bar: bar["minute"])
    return orjson.dumps(merged)


def bars_response(symbol: str, bars_json: bytes) -> bytes:
    """`{"symbol": ..., "bars": [...]}` around bars that are already JSON."""
    return b'{"symbol":' + orjson.dumps(symbol) + b',"bars":' + bars_json + b"}"
