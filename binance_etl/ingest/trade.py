"""The typed trade, and turning Binance payloads (stream frames, REST rows) into trades.

A `Trade` is a NamedTuple whose fields are exactly the columns the writer copies into
PostgreSQL, in order, so a trade is a COPY row as it stands (no per-row conversion on the way).
Prices and quantities are `Decimal`, times are aware UTC datetimes built from integer
milliseconds (exact: no float on the way).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Trade times before 2017 (Binance's launch) or after 2100 are corrupt, not trades.
_MIN_MS = 1_483_228_800_000
_MAX_MS = 4_102_444_800_000

COLUMNS = (
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "trade_time",
    "event_time",
    "is_buyer_maker",
)


class Trade(NamedTuple):
    """One Binance spot trade; field order = the `trades` columns the writer fills."""

    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    trade_time: datetime
    event_time: datetime | None
    is_buyer_maker: bool


def _new_trade(fields: tuple[Any, ...]) -> Trade:
    """Trade(*fields) without NamedTuple's Python-level __new__ (the hot path's one tuple)."""
    return tuple.__new__(Trade, fields)


class FrameError(ValueError):
    """A frame or field that is not a well-formed trade."""


class Event(NamedTuple):
    """A parsed stream frame: a trade plus its event and trade times in ms (for lag figures)."""

    trade: Trade
    event_ms: int
    trade_ms: int


def ms_to_datetime(ms: Any) -> datetime:
    """Integer epoch milliseconds -> aware UTC datetime, exactly."""
    if type(ms) is not int or not _MIN_MS <= ms <= _MAX_MS:
        raise FrameError(f"time {ms!r} is not epoch milliseconds")
    return EPOCH + ms * _MS


def datetime_to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


_DECIMAL_RE = re.compile(r"\d{1,22}(?:\.\d{0,8})?\Z")


def to_decimal(text: Any, name: str) -> Decimal:
    """A Binance decimal string -> Decimal: plain digits, <= 22 integer and <= 8 decimal places.

    Everything else (exponents, signs, NaN, too many digits) is refused: the column is
    numeric(30, 8) and PostgreSQL would otherwise round or reject the whole batch.
    """
    if type(text) is not str or not _DECIMAL_RE.match(text):
        raise FrameError(f"{name} {text!r} is not a decimal with at most 8 places")
    return Decimal(text)


def _trade_id(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise FrameError(f"trade id {value!r} is not a non-negative integer")
    return value


def _flag(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise FrameError(f"{name} {value!r} is not a boolean")
    return value


def _symbol(value: Any) -> str:
    if type(value) is not str or not value:
        raise FrameError(f"symbol {value!r} is not a string")
    return value


class FrameParser:
    """Parses stream frames into Events; caches repeated prices, quantities and times.

    Consecutive trades share event times, trade times and price levels, so small caches turn
    most Decimal and datetime constructions into one dict lookup (the hot path of the
    streamer). Cached values are immutable, so sharing them between trades is safe.
    """

    CACHE_LIMIT = 50_000

    def __init__(self) -> None:
        self._decimals: dict[str, Decimal] = {}
        self._times: dict[int, datetime] = {}
        self.event_ms = 0
        self.trade_ms = 0

    def parse(self, payload: bytes | str | memoryview) -> Trade | None:
        """A combined-stream frame `{"stream": ..., "data": {...}}` (or a raw event) -> Trade.

        The event and trade times of the returned trade, in ms, are left in `event_ms` and
        `trade_ms`. Returns None for valid frames that are not trades (subscription replies,
        events such as `serverShutdown`, see `control_event`). Raises FrameError for anything
        malformed. Unknown fields are ignored.
        """
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise FrameError(f"not JSON: {error}") from None
        try:
            data = message["data"]
            if data["e"] != "trade":
                return self._slow(message)
            event_ms = data["E"]
            trade_ms = data["T"]
            trade_id = data["t"]
            flag = data["m"]
            symbol = data["s"]
            decimals = self._decimals
            times = self._times
            price = decimals.get(p := data["p"]) or self._decimal(p, "price")
            quantity = decimals.get(q := data["q"]) or self._decimal(q, "quantity")
            trade_time = times.get(trade_ms) or self._time(trade_ms)
            event_time = times.get(event_ms) or self._time(event_ms)
        except (KeyError, TypeError, FrameError):
            return self._slow(message)  # raises FrameError with the exact reason
        if type(trade_id) is not int or trade_id < 0 or type(flag) is not bool or (
            type(symbol) is not str
        ):
            return self._slow(message)
        self.event_ms = event_ms
        self.trade_ms = trade_ms
        return _new_trade((symbol, trade_id, price, quantity, trade_time, event_time, flag))

    def _decimal(self, text: Any, name: str) -> Decimal:
        value = to_decimal(text, name)
        self._remember(self._decimals, text, value)
        return value

    def _time(self, ms: Any) -> datetime:
        value = ms_to_datetime(ms)
        self._remember(self._times, ms, value)
        return value

    def _slow(self, message: Any) -> Trade | None:
        """Full validation (with the exact reason on failure); fills the caches."""
        if not isinstance(message, dict):
            raise FrameError("frame is not a JSON object")
        if "result" in message and "id" in message:  # reply to SUBSCRIBE / LIST_SUBSCRIPTIONS
            return None
        data = message.get("data", message) if "stream" in message else message
        if isinstance(data, dict) and data.get("e", "trade") != "trade":
            return None
        event = parse_trade_event(data)
        trade = event.trade
        self._remember(self._decimals, data["p"], trade.price)
        self._remember(self._decimals, data["q"], trade.quantity)
        self._remember(self._times, event.trade_ms, trade.trade_time)
        self._remember(self._times, event.event_ms, trade.event_time)
        self.event_ms = event.event_ms
        self.trade_ms = event.trade_ms
        return trade

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        cache[key] = value


def parse_trade_event(data: Any) -> Event:
    """A `trade` event object (the `data` of a combined-stream frame) -> Event."""
    if not isinstance(data, dict):
        raise FrameError("event is not an object")
    try:
        if data["e"] != "trade":
            raise FrameError(f"event type {data['e']!r} is not 'trade'")
        event_ms = data["E"]
        trade_ms = data["T"]
        trade = Trade(
            _symbol(data["s"]),
            _trade_id(data["t"]),
            to_decimal(data["p"], "price"),
            to_decimal(data["q"], "quantity"),
            ms_to_datetime(trade_ms),
            ms_to_datetime(event_ms),
            _flag(data["m"], "m"),
        )
    except KeyError as missing:
        raise FrameError(f"field {missing} missing") from None
    return Event(trade, event_ms, trade_ms)


def parse_frame(payload: bytes | str | memoryview) -> Event | None:
    """One frame with a fresh parser (tests, tools); the streamer keeps a FrameParser."""
    parser = FrameParser()
    trade = parser.parse(payload)
    return None if trade is None else Event(trade, parser.event_ms, parser.trade_ms)


def control_event(payload: bytes | str | memoryview) -> str | None:
    """The `e` of a non-trade event frame (e.g. 'serverShutdown'), or None."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    data = message.get("data", message)
    event = data.get("e") if isinstance(data, dict) else None
    return event if isinstance(event, str) and event != "trade" else None


def parse_rest_trade(symbol: str, row: Any) -> Trade:
    """A row of /api/v3/trades or /api/v3/historicalTrades -> Trade (no event time)."""
    if not isinstance(row, dict):
        raise FrameError("REST trade is not an object")
    try:
        return Trade(
            symbol,
            _trade_id(row["id"]),
            to_decimal(row["price"], "price"),
            to_decimal(row["qty"], "qty"),
            ms_to_datetime(row["time"]),
            None,
            _flag(row["isBuyerMaker"], "isBuyerMaker"),
        )
    except KeyError as missing:
        raise FrameError(f"field {missing} missing") from None
