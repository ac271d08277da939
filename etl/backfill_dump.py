"""Binance's daily trade dumps as data: URLs, checksum files, time units, rows -> COPY text.

Pure functions and one streaming converter; no network and no database (see `etl/backfill.py`).

A dump row is `id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch` (no header). `time` is in
milliseconds in files before 2025 and in microseconds from 2025-01-01; the unit is detected per
file from the magnitude of the first value, and every row is then checked to fall inside the
file's day, so a file whose unit is not the one its date suggests still loads exactly, and a
file that mixes units fails loudly instead of storing wrong times.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from binance_etl.numbers import non_negative_decimal

TimeUnit = Literal["ms", "us"]

DUMPS_PATH = "data/spot/daily/trades"
KLINES_PATH = "data/spot/daily/klines"
# 1e14 ms is the year 5138 and 1e14 µs is 1973: any real trade time is on one side or the other.
MICROSECOND_THRESHOLD = 10**14
PER_SECOND: dict[TimeUnit, int] = {"ms": 1_000, "us": 1_000_000}
SECONDS_PER_DAY = 86_400
EPOCH_DAY = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_BOOLEANS = {"true": True, "false": False}

COPY_COLUMNS = ("symbol", "trade_id", "price", "quantity", "trade_time", "event_time",
                "is_buyer_maker")


class DumpFormatError(ValueError):
    """A dump or checksum file that does not have Binance's format."""


def dump_file_name(symbol: str, day: date) -> str:
    return f"{symbol}-trades-{day:%Y-%m-%d}.zip"


def dump_url(base_url: str, symbol: str, day: date) -> str:
    """`{BINANCE_DATA_URL}/data/spot/daily/trades/<SYMBOL>/<SYMBOL>-trades-YYYY-MM-DD.zip`."""
    return f"{base_url.rstrip('/')}/{DUMPS_PATH}/{symbol}/{dump_file_name(symbol, day)}"


def checksum_url(base_url: str, symbol: str, day: date) -> str:
    return dump_url(base_url, symbol, day) + ".CHECKSUM"


def klines_file_name(symbol: str, day: date) -> str:
    return f"{symbol}-1m-{day:%Y-%m-%d}.zip"


def klines_url(base_url: str, symbol: str, day: date) -> str:
    """`{BINANCE_DATA_URL}/data/spot/daily/klines/<SYMBOL>/1m/<SYMBOL>-1m-YYYY-MM-DD.zip`."""
    return f"{base_url.rstrip('/')}/{KLINES_PATH}/{symbol}/1m/{klines_file_name(symbol, day)}"


def parse_checksum(text: str, file_name: str) -> str:
    """The lower-case SHA-256 from a `.CHECKSUM` file (`<sha256>  <file name>`)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise DumpFormatError(f"checksum file for {file_name}: expected one line, got {len(lines)}")
    parts = lines[0].split()
    if len(parts) != 2 or not _SHA256.match(parts[0]):
        raise DumpFormatError(f"checksum file for {file_name}: expected '<sha256>  <file name>'")
    digest, name = parts[0].lower(), parts[1].lstrip("*")  # sha256sum marks binary mode with '*'
    if name != file_name:
        raise DumpFormatError(f"checksum file names {name!r}, expected {file_name!r}")
    return digest


def detect_time_unit(value: int) -> TimeUnit:
    """Milliseconds or microseconds since the epoch, from the value's magnitude alone."""
    if value <= 0:
        raise DumpFormatError(f"trade time {value} is not a positive epoch value")
    return "us" if value >= MICROSECOND_THRESHOLD else "ms"


def epoch_to_datetime(value: int, unit: TimeUnit) -> datetime:
    """An exact aware UTC datetime (integer arithmetic: no float on the way)."""
    micros = value * 1000 if unit == "ms" else value
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class DumpRow:
    trade_id: int
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    trade_time: datetime
    is_buyer_maker: bool
    is_best_match: bool


def _decimal(text: str, name: str) -> Decimal:
    return non_negative_decimal(text, name, DumpFormatError)


def _boolean(text: str, name: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise DumpFormatError(f"{name} {text!r} is not True/False") from None


def parse_row(line: str, unit: TimeUnit | None = None) -> DumpRow:
    """One CSV line as typed values (Decimal, aware datetime); the unit is detected if not given.

    The loader does not call this per row (it converts text straight to COPY text for speed);
    it states the format, and tests hold the fast converter to it.
    """
    fields = line.rstrip("\r\n").split(",")
    if len(fields) != 7:
        raise DumpFormatError(f"expected 7 fields, got {len(fields)}: {line.strip()[:80]!r}")
    trade_id, price, quantity, quote, time_text, maker, best = fields
    try:
        identifier, time_value = int(trade_id), int(time_text)
    except ValueError:
        raise DumpFormatError(f"bad id or time in {line.strip()[:80]!r}") from None
    unit = unit or detect_time_unit(time_value)
    return DumpRow(
        trade_id=identifier,
        price=_decimal(price, "price"),
        quantity=_decimal(quantity, "quantity"),
        quote_quantity=_decimal(quote, "quoteQty"),
        trade_time=epoch_to_datetime(time_value, unit),
        is_buyer_maker=_boolean(maker, "isBuyerMaker"),
        is_best_match=_boolean(best, "isBestMatch"),
    )


class IdRanges:
    """Sorted, disjoint inclusive ranges of trade ids already stored; `id in ranges`."""

    def __init__(self, ranges: Sequence[tuple[int, int]] = ()) -> None:
        ordered = sorted(ranges)
        for (_, previous_end), (start, _) in zip(ordered, ordered[1:], strict=False):
            if start <= previous_end:
                raise ValueError("id ranges overlap")
        self.starts = [start for start, _ in ordered]
        self.ends = [end for _, end in ordered]

    def __len__(self) -> int:
        return len(self.starts)

    def __contains__(self, trade_id: object) -> bool:
        assert isinstance(trade_id, int)
        index = bisect_right(self.starts, trade_id) - 1
        return index >= 0 and trade_id <= self.ends[index]

    def count(self) -> int:
        return sum(end - start + 1 for start, end in zip(self.starts, self.ends, strict=True))


@lru_cache(maxsize=4)
def second_texts(day: date) -> tuple[str, ...]:
    """`YYYY-MM-DD HH:MM:SS` of every second of the day, indexed by the second."""
    return tuple(f"{day} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
                 for second in range(SECONDS_PER_DAY))


class RowConverter:
    """Streams a dump's CSV bytes into CSV text for `COPY trades (COPY_COLUMNS) FROM STDIN`.

    Feed it chunks of any size (`feed`, then `finish`); lines split across chunks are joined.
    Prices and quantities pass through as the exact decimal text Binance printed; times become
    `YYYY-MM-DD HH:MM:SS.ffffff+00` (or `.fff` for milliseconds): exact, and cheap because the
    second's text is looked up, not formatted, per row. `event_time` is left NULL: a dump does
    not carry the event time of the stream, and NULL says "unknown" rather than inventing one.
    Rows whose id is in `skip` (already stored) are counted and dropped.
    """

    def __init__(self, symbol: str, day: date, skip: IdRanges | None = None) -> None:
        self.symbol = symbol
        self.day = day
        self.skip = skip if skip else None
        self.unit: TimeUnit | None = None
        self.rows = 0  # rows read from the file
        self.skipped = 0  # rows dropped because their id is already stored
        self.first_id: int | None = None
        self.last_id: int | None = None
        self._rest = ""
        self._line = 0
        self._seconds = second_texts(day)
        self._day_seconds = (day - EPOCH_DAY).days * SECONDS_PER_DAY

    def _set_unit(self, time_value: int) -> None:
        self.unit = detect_time_unit(time_value)
        self._digits = 3 if self.unit == "ms" else 6  # the fraction's digits at the value's end

    def feed(self, chunk: bytes) -> str:
        """COPY text for the complete lines in `rest + chunk`; keeps the last partial line."""
        try:
            text = self._rest + chunk.decode("ascii")
        except UnicodeDecodeError:
            raise DumpFormatError(f"non-ASCII bytes after line {self._line}") from None
        cut = text.rfind("\n")
        if cut < 0:
            self._rest = text
            return ""
        self._rest = text[cut + 1 :]
        return self._convert(text[: cut + 1])

    def finish(self) -> str:
        rest, self._rest = self._rest, ""
        return self._convert(rest)

    def _fail(self, offset: int, lines: list[str], problem: str) -> DumpFormatError:
        line = lines[offset] if offset < len(lines) else ""
        return DumpFormatError(f"line {self._line + offset + 1}: {problem}: {line[:80]!r}")

    def _convert(self, text: str) -> str:
        if "\r" in text:
            text = text.replace("\r", "")
        if '"' in text:  # Binance never quotes; a quote would change how COPY reads the line
            raise DumpFormatError(f"a quote character after line {self._line}")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if self.rows == 0 and self._line == 0 and lines and not lines[0][:1].isdigit():
            lines.pop(0)  # a header line (newer files of some markets carry one)
            self._line += 1
        if not lines:
            return ""
        if self.unit is None:
            first = lines[0].split(",")
            if len(first) != 7 or not first[4].isdigit():
                raise self._fail(0, lines, "expected id,price,qty,quoteQty,time,isBuyerMaker,"
                                           "isBestMatch")
            self._set_unit(int(first[4]))
        out: list[str] = []
        append = out.append
        prefix, seconds, skip = self.symbol + ",", self._seconds, self.skip
        first_second, digits = self._day_seconds, self._digits
        skipped = 0
        index = 0
        try:
            for index, line in enumerate(lines):  # noqa: B007 - index names the failing line
                trade_id, price, quantity, _quote, time_text, maker, _best = line.split(",")
                # the value's leading digits are whole seconds, its last 3 or 6 the fraction:
                # slicing the text is exact and cheaper than integer division and formatting
                second = int(time_text[:-digits]) - first_second
                if not 0 <= second < SECONDS_PER_DAY:
                    raise self._fail(index, lines, f"time outside {self.day} (unit {self.unit})")
                if skip is not None and int(trade_id) in skip:
                    skipped += 1
                    continue
                append(f"{prefix}{trade_id},{price},{quantity},"
                       f"{seconds[second]}.{time_text[-digits:]}+00,,{maker}\n")
        except ValueError as error:
            if isinstance(error, DumpFormatError):
                raise
            raise self._fail(index, lines, "expected 7 fields with integer id and time") from None
        if lines:
            first_id, last_id = int(lines[0].split(",", 1)[0]), int(lines[-1].split(",", 1)[0])
            self.first_id = first_id if self.first_id is None else self.first_id
            self.last_id = last_id
        self.rows += len(lines)
        self.skipped += skipped
        self._line += len(lines)
        return "".join(out)
