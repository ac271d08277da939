"""Binance's one-minute klines: the typed row, and the REST client that pages through a range.

A kline is `[open time, open, high, low, close, volume, close time, quote asset volume,
number of trades, taker buy base volume, taker buy quote volume, ignore]` (REST and the daily
dumps alike); prices and volumes are decimal strings, kept as `Decimal`. Binance emits a kline
for every minute, also minutes without trades (count 0).

`GET /api/v3/klines` returns at most 1,000 klines per call (request weight 2); the client pages
by open time and shares the rate-limit manners of `binance_etl.rest` (used weight, 429 with
`Retry-After`, never a 418).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from binance_etl.numbers import non_negative_decimal
from binance_etl.rest import RateLimitedRest, RestError

KLINES_PATH = "/api/v3/klines"
KLINES_LIMIT = 1000  # Binance's maximum per call
KLINES_WEIGHT = 2
MINUTE_MS = 60_000


class KlineFormatError(ValueError):
    """A kline that does not have Binance's shape."""


@dataclass(frozen=True, slots=True)
class Kline:
    """One minute of one symbol as Binance reports it (`open_ms`: the minute, epoch ms)."""

    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    taker_buy_volume: Decimal


def _decimal(value: object, name: str) -> Decimal:
    return non_negative_decimal(value, name, KlineFormatError)


def _integer(value: object, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise KlineFormatError(f"{name} {value!r} is not a non-negative integer")
    return int(text)


def parse_kline(fields: Sequence[object], per_ms: int = 1) -> Kline:
    """One kline from its 12 fields; `per_ms` is 1000 when the times are in microseconds."""
    if len(fields) < 11:
        raise KlineFormatError(f"expected 12 fields, got {len(fields)}")
    open_time = _integer(fields[0], "open time")
    if open_time % (MINUTE_MS * per_ms):
        raise KlineFormatError(f"open time {open_time} is not the start of a minute")
    return Kline(
        open_ms=open_time // per_ms,
        open=_decimal(fields[1], "open"),
        high=_decimal(fields[2], "high"),
        low=_decimal(fields[3], "low"),
        close=_decimal(fields[4], "close"),
        volume=_decimal(fields[5], "volume"),
        quote_volume=_decimal(fields[7], "quote asset volume"),
        trades=_integer(fields[8], "number of trades"),
        taker_buy_volume=_decimal(fields[9], "taker buy base volume"),
    )


async def rest_klines(rest: RateLimitedRest, symbol: str, start_ms: int, end_ms: int,
                      attempts: int | None = None) -> list[Kline]:
    """Every 1m kline of `symbol` opening in [start_ms, end_ms), oldest first.

    Pages of up to 1,000 by open time; stops early when Binance has nothing more (a range that
    reaches into the future, or before the symbol was listed)."""
    klines: list[Kline] = []
    cursor = start_ms
    while cursor < end_ms:
        rows = await rest.get(
            KLINES_PATH,
            {"symbol": symbol, "interval": "1m", "startTime": cursor, "endTime": end_ms - 1,
             "limit": KLINES_LIMIT},
            attempts=attempts,
        )
        if not isinstance(rows, list):
            raise RestError(f"klines of {symbol}: expected a list")
        try:
            page = [parse_kline(row) for row in rows if isinstance(row, list)]
        except KlineFormatError as error:
            raise RestError(f"klines of {symbol}: {error}") from None
        if len(page) != len(rows):
            raise RestError(f"klines of {symbol}: a row is not a list")
        page = [kline for kline in page if start_ms <= kline.open_ms < end_ms]
        if not page or page[-1].open_ms < cursor:
            break
        klines.extend(kline for kline in page if kline.open_ms >= cursor)
        cursor = page[-1].open_ms + MINUTE_MS
        if len(rows) < KLINES_LIMIT:
            break
    return klines
