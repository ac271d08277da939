"""1m klines made from the feed's own trades, so that they agree with what it streams and dumps.

Binance's kline of a minute: open/high/low/close of its trades, base volume, quote volume (the
sum of each trade's quote quantity cut to eight decimals: the replay truncates, as its trade
dumps print `quoteQty`), number of trades, taker-buy base and quote volume. A minute without
trades still has a kline: count 0, volumes 0, every price the previous close.

`fault` makes the klines disagree with the trades on purpose, for tests and the demo:
"kline-off" moves the close of the first traded minute up by 1e-8; "trade-missing" counts one
trade more in that minute (quantity 1e-8 at its open price) than the feed ever published, as if
the stream, REST and the trade dump had all lost it. `fault_klines_zip` does the same to a
klines dump on its way out of the feed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

import orjson

UNITS = 100_000_000  # 1e-8 steps per whole unit
MINUTE_MS = 60_000
KlineFault = Literal["kline-off", "trade-missing"]
KLINE_FAULTS: tuple[KlineFault, ...] = ("kline-off", "trade-missing")


class TradeUnits(NamedTuple):
    """A trade in integers: time in ms, price and quantity in 1e-8 units."""

    time_ms: int
    price_e8: int
    quantity_e8: int
    is_buyer_maker: bool


class KlineRow(NamedTuple):
    open_ms: int
    open_e8: int
    high_e8: int
    low_e8: int
    close_e8: int
    volume_e8: int
    quote_e8: int
    trades: int
    taker_volume_e8: int
    taker_quote_e8: int


def e8(value: int) -> str:
    return f"{value // UNITS}.{value % UNITS:08d}"


def build_klines(trades: Iterable[TradeUnits], first_ms: int, end_ms: int,
                 previous_close_e8: int = 0, fault: KlineFault | None = None) -> list[KlineRow]:
    """One kline per minute opening in [first_ms, end_ms) (both on minute boundaries); `trades`
    in time order, those outside the range ignored."""
    first_ms -= first_ms % MINUTE_MS
    count = max(0, -(-(end_ms - first_ms) // MINUTE_MS))
    minutes: list[list[int] | None] = [None] * count
    for trade in trades:
        index = (trade.time_ms - first_ms) // MINUTE_MS
        if not 0 <= index < count:
            continue
        quote = trade.price_e8 * trade.quantity_e8 // UNITS
        taker = not trade.is_buyer_maker
        bar = minutes[index]
        if bar is None:
            minutes[index] = [trade.price_e8, trade.price_e8, trade.price_e8, trade.price_e8,
                              trade.quantity_e8, quote, 1, trade.quantity_e8 if taker else 0,
                              quote if taker else 0]
            continue
        bar[1] = max(bar[1], trade.price_e8)
        bar[2] = min(bar[2], trade.price_e8)
        bar[3] = trade.price_e8
        bar[4] += trade.quantity_e8
        bar[5] += quote
        bar[6] += 1
        if taker:
            bar[7] += trade.quantity_e8
            bar[8] += quote
    rows: list[KlineRow] = []
    close = previous_close_e8
    faulted = fault is None
    for index, bar in enumerate(minutes):
        open_ms = first_ms + index * MINUTE_MS
        if bar is None:
            rows.append(KlineRow(open_ms, close, close, close, close, 0, 0, 0, 0, 0))
            continue
        row = KlineRow(open_ms, *bar)
        if not faulted:
            faulted = True
            assert fault is not None
            row = spoil(row, fault)
        close = row.close_e8
        rows.append(row)
    return rows


def spoil(row: KlineRow, fault: KlineFault) -> KlineRow:
    """The kline as the fault leaves it (see the module's doc)."""
    if fault == "kline-off":
        return row._replace(close_e8=row.close_e8 + 1)
    # "trade-missing": a trade of 1e-8 at the open price that nobody received
    return row._replace(volume_e8=row.volume_e8 + 1, quote_e8=row.quote_e8 + row.open_e8 // UNITS,
                        trades=row.trades + 1)


def _units(text: str) -> int:
    whole, _, fraction = text.partition(".")
    return int(whole) * UNITS + int((fraction + "0" * 8)[:8])


def fault_klines_zip(data: bytes, fault: KlineFault) -> bytes:
    """A klines dump (zip of one CSV) with its first traded minute spoiled by `fault`."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = archive.infolist()[0]
        lines = archive.read(member).decode("ascii").splitlines()
    for index, line in enumerate(lines):
        fields = line.split(",")
        if len(fields) < 12 or not fields[0].isdigit() or fields[8] == "0":
            continue
        per_ms = 1000 if int(fields[0]) >= 10**14 else 1
        row = KlineRow(int(fields[0]) // per_ms, _units(fields[1]), _units(fields[2]),
                       _units(fields[3]), _units(fields[4]), _units(fields[5]),
                       _units(fields[7]), int(fields[8]), _units(fields[9]), _units(fields[10]))
        lines[index] = ",".join(str(v) for v in _fields(spoil(row, fault), per_ms))
        break
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(member.filename, date_time=member.date_time),
                         "\n".join(lines) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def checksum_line(data: bytes, name: str) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


def _fields(row: KlineRow, per_ms: int) -> list[object]:
    return [row.open_ms * per_ms, e8(row.open_e8), e8(row.high_e8), e8(row.low_e8),
            e8(row.close_e8), e8(row.volume_e8), (row.open_ms + MINUTE_MS) * per_ms - 1,
            e8(row.quote_e8), row.trades, e8(row.taker_volume_e8), e8(row.taker_quote_e8), "0"]


def rest_body(rows: Sequence[KlineRow]) -> bytes:
    """`GET /api/v3/klines`'s JSON array (times in milliseconds)."""
    return orjson.dumps([_fields(row, 1) for row in rows])


def csv_lines(rows: Sequence[KlineRow], unit: Literal["ms", "us"]) -> str:
    """The daily dump's CSV (no header; times in ms or µs)."""
    per_ms = 1000 if unit == "us" else 1
    return "".join(",".join(str(value) for value in _fields(row, per_ms)) + "\n" for row in rows)
