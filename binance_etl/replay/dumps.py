"""Binance's public daily trade dumps, generated offline in their real format.

Binance publishes every spot trade of a UTC day as
`data/spot/daily/trades/<SYMBOL>/<SYMBOL>-trades-YYYY-MM-DD.zip` (one CSV member of the same
name, no header) with a `.CHECKSUM` file beside it (`<sha256>  <file name>`). A row is

    id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch
    4732418560,108246.01000000,0.00010000,10.82460100,1756684800012345,True,True

with prices and quantities printed with eight decimals and `time` in microseconds from
2025-01-01 on, milliseconds before. This module writes such files (and deliberately broken
ones, for tests) under `<dumps-dir>/<SYMBOL>/<file>`, the layout the replay server serves at
`/data/spot/daily/trades/<SYMBOL>/<file>`:

    python -m binance_etl.replay.dumps --dumps-dir data/dumps --symbols BTCUSDT \
        --from 2025-09-01 --to 2025-09-02 --trades 100000

Beside each trade dump it writes the day's 1m klines dump made from the same trades,
`<dumps-dir>/klines/<SYMBOL>/1m/<SYMBOL>-1m-YYYY-MM-DD.zip` (+ `.CHECKSUM`), served at Binance's
`/data/spot/daily/klines/<SYMBOL>/1m/<file>`; `--klines-fault` makes it disagree.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import struct
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from binance_etl.replay.klines import (
    KLINE_FAULTS,
    KlineFault,
    KlineRow,
    TradeUnits,
    build_klines,
    csv_lines,
)
from binance_etl.settings import parse_symbols

logger = logging.getLogger(__name__)

TimeUnit = Literal["ms", "us"]
Fault = Literal["bad-checksum", "truncated", "bad-crc"]
FAULTS: tuple[Fault, ...] = ("bad-checksum", "truncated", "bad-crc")

UNITS = 100_000_000  # 1e-8 steps per whole unit: prices and quantities are exact integers here
MICROS_FROM = date(2025, 1, 1)  # Binance's spot dumps switched from milliseconds to microseconds
US_PER_DAY = 86_400_000_000
WRITE_BATCH = 50_000  # rows formatted per write into the zip member


@dataclass(frozen=True, slots=True)
class DumpTrade:
    """One trade as a dump holds it; price and quantity in 1e-8 units, time in microseconds."""

    trade_id: int
    price_e8: int
    quantity_e8: int
    time_us: int
    is_buyer_maker: bool

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_e8).scaleb(-8)

    @property
    def quantity(self) -> Decimal:
        return Decimal(self.quantity_e8).scaleb(-8)

    @property
    def trade_time(self) -> datetime:
        """The exact time, to the microsecond, as an aware UTC datetime."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.time_us)


@dataclass(frozen=True)
class DumpFiles:
    zip_path: Path
    checksum_path: Path
    sha256: str  # what the .CHECKSUM file says (not the zip's real hash for "bad-checksum")


def _e8(value: int) -> str:
    return f"{value // UNITS}.{value % UNITS:08d}"


def day_start_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * US_PER_DAY


def default_time_unit(day: date) -> TimeUnit:
    return "us" if day >= MICROS_FROM else "ms"


def dump_file_name(symbol: str, day: date) -> str:
    return f"{symbol}-trades-{day:%Y-%m-%d}.zip"


def dump_path(dumps_dir: str | Path, symbol: str, day: date) -> Path:
    return Path(dumps_dir) / symbol / dump_file_name(symbol, day)


def format_row(trade: DumpTrade, unit: TimeUnit) -> str:
    """One CSV line exactly as Binance prints it (quoteQty truncated to eight decimals)."""
    if unit == "ms":
        if trade.time_us % 1000:
            raise ValueError(f"trade {trade.trade_id}: {trade.time_us} µs has no exact ms value")
        time_value = trade.time_us // 1000
    else:
        time_value = trade.time_us
    quote_e8 = trade.price_e8 * trade.quantity_e8 // UNITS
    maker = "True" if trade.is_buyer_maker else "False"
    return (
        f"{trade.trade_id},{_e8(trade.price_e8)},{_e8(trade.quantity_e8)},{_e8(quote_e8)},"
        f"{time_value},{maker},True\n"
    )


def generate_trades(
    symbol: str,
    day: date,
    count: int,
    *,
    first_id: int = 1_000_000,
    unit: TimeUnit | None = None,
    seed: int | None = None,
) -> Iterator[DumpTrade]:
    """`count` trades spread over the day: consecutive ids, a seeded random walk of prices.

    Times never decrease and stay inside the day; in a millisecond file they are whole
    milliseconds, so the file holds every time exactly.
    """
    unit = unit or default_time_unit(day)
    step = 1000 if unit == "ms" else 1
    rng = random.Random(seed if seed is not None else f"{symbol}{day}")
    start = day_start_us(day)
    slots = US_PER_DAY // step  # distinct times available in the day
    price = 60_000 * UNITS if symbol.startswith("BTC") else 2_500 * UNITS
    tick = 1_000_000  # 0.01
    gap = max(1, slots // max(count, 1))  # each trade gets its own slice of the day
    for index in range(count):
        price = max(tick, price + tick * rng.randint(-3, 3))
        quantity = rng.randint(1, 200_000) * 1_000  # 0.00001 steps up to 2 units
        offset = min(slots - 1, (index * slots) // max(count, 1) + rng.randrange(gap))
        maker = rng.random() < 0.5
        yield DumpTrade(first_id + index, price, quantity, start + offset * step, maker)


def write_dump(
    dumps_dir: str | Path,
    symbol: str,
    day: date,
    trades: Iterable[DumpTrade],
    *,
    unit: TimeUnit | None = None,
    fault: Fault | None = None,
    compresslevel: int = 6,
) -> DumpFiles:
    """Write `<SYMBOL>-trades-<day>.zip` and its `.CHECKSUM` under `<dumps_dir>/<SYMBOL>/`.

    Faults, for tests: "bad-checksum" publishes a checksum that does not match; "truncated" cuts
    the zip in half (its central directory is lost) and publishes the checksum of what is left;
    "bad-crc" alters one digit of the data after it was written, so the archive opens and its
    rows stream but the member's CRC check fails at the end (the checksum matches the file).
    """
    unit = unit or default_time_unit(day)
    path = dump_path(dumps_dir, symbol, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv_name = path.name.removesuffix(".zip") + ".csv"
    compression = zipfile.ZIP_STORED if fault == "bad-crc" else zipfile.ZIP_DEFLATED
    level = None if compression == zipfile.ZIP_STORED else compresslevel
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=level) as archive:
        info = zipfile.ZipInfo(csv_name, date_time=(day.year, day.month, day.day, 0, 0, 0))
        info.compress_type = compression
        with archive.open(info, "w") as member:
            batch: list[str] = []
            for trade in trades:
                batch.append(format_row(trade, unit))
                if len(batch) >= WRITE_BATCH:
                    member.write("".join(batch).encode("ascii"))
                    batch.clear()
            member.write("".join(batch).encode("ascii"))
    if fault == "truncated":
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif fault == "bad-crc":
        data = bytearray(path.read_bytes())
        # A stored member's bytes follow its local header: 30 bytes, then name and extra field.
        name_length, extra_length = struct.unpack_from("<HH", data, 26)
        digit = data.index(b",", 30 + name_length + extra_length) + 1  # the first price's digit
        data[digit] = ord("1") if data[digit] != ord("1") else ord("2")
        path.write_bytes(bytes(data))
    return _publish_checksum(path, bad=fault == "bad-checksum")


def _publish_checksum(path: Path, *, bad: bool = False) -> DumpFiles:
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    if bad:
        sha256 = hashlib.sha256(sha256.encode()).hexdigest()
    checksum_path = path.with_name(path.name + ".CHECKSUM")
    checksum_path.write_text(f"{sha256}  {path.name}\n")
    return DumpFiles(path, checksum_path, sha256)


def klines_path(dumps_dir: str | Path, symbol: str, day: date) -> Path:
    return Path(dumps_dir) / "klines" / symbol / "1m" / f"{symbol}-1m-{day:%Y-%m-%d}.zip"


def write_klines_dump(
    dumps_dir: str | Path,
    symbol: str,
    day: date,
    trades: Iterable[DumpTrade],
    *,
    unit: TimeUnit | None = None,
    fault: KlineFault | None = None,
) -> DumpFiles:
    """The day's 1m klines of `trades` (all 1,440 minutes) as Binance's klines dump and its
    `.CHECKSUM`, under `<dumps_dir>/klines/<SYMBOL>/1m/`; `fault` as in `replay.klines`."""
    start_ms = day_start_us(day) // 1000
    units = (TradeUnits(trade.time_us // 1000, trade.price_e8, trade.quantity_e8,
                        trade.is_buyer_maker) for trade in trades)
    rows = build_klines(units, start_ms, start_ms + US_PER_DAY // 1000, fault=fault)
    return write_klines_rows(dumps_dir, symbol, day, rows, unit=unit)


def write_klines_rows(dumps_dir: str | Path, symbol: str, day: date, rows: Sequence[KlineRow],
                      *, unit: TimeUnit | None = None) -> DumpFiles:
    """Klines already made (e.g. by a benchmark from PostgreSQL) as the day's klines dump."""
    unit = unit or default_time_unit(day)
    path = klines_path(dumps_dir, symbol, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(path.name.removesuffix(".zip") + ".csv",
                               date_time=(day.year, day.month, day.day, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, csv_lines(rows, unit))
    return _publish_checksum(path)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m binance_etl.replay.dumps",
                     description="Write daily trade dumps.")
    parser.add_argument("--dumps-dir", required=True, type=Path)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--from", dest="first", required=True, type=date.fromisoformat)
    parser.add_argument("--to", dest="last", required=True, type=date.fromisoformat)
    parser.add_argument("--trades", type=int, default=100_000, help="trades per symbol and day")
    parser.add_argument("--unit", choices=["ms", "us"], help="default: as Binance for the date")
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--klines-fault", choices=KLINE_FAULTS,
                        help="make the klines dumps disagree with the trades")
    args = parser.parse_args(argv)
    try:
        symbols = parse_symbols(args.symbols)
    except ValueError as error:
        parser.error(f"--symbols: {error}")
    if args.last < args.first:
        parser.error("--to is before --from")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    day = args.first
    first_id = 1_000_000
    while day <= args.last:
        for symbol in symbols:
            # the generator is seeded by symbol and day: two passes give the same trades
            files = write_dump(args.dumps_dir, symbol, day,
                               generate_trades(symbol, day, args.trades, first_id=first_id,
                                               unit=args.unit),
                               unit=args.unit, fault=args.fault)
            klines = write_klines_dump(args.dumps_dir, symbol, day,
                                       generate_trades(symbol, day, args.trades,
                                                       first_id=first_id, unit=args.unit),
                                       unit=args.unit, fault=args.klines_fault)
            logger.info("wrote %s (%d trades) and %s", files.zip_path, args.trades,
                        klines.zip_path)
        first_id += args.trades
        day += timedelta(days=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
