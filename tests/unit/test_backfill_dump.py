"""Dump format: URLs, checksum files, time units, row parsing and the fast COPY converter."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from binance_etl.replay.dumps import (
    DumpTrade,
    day_start_us,
    format_row,
    generate_trades,
    write_dump,
)
from etl.backfill_dump import (
    DumpFormatError,
    IdRanges,
    RowConverter,
    checksum_url,
    detect_time_unit,
    dump_url,
    parse_checksum,
    parse_row,
)

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_urls_follow_binance_layout() -> None:
    day = date(2025, 9, 1)
    assert dump_url("https://data.binance.vision", "BTCUSDT", day) == (
        "https://data.binance.vision/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-09-01.zip")
    assert checksum_url("http://127.0.0.1:8080/", "ETHUSDT", date(2024, 2, 29)) == (
        "http://127.0.0.1:8080/data/spot/daily/trades/ETHUSDT/"
        "ETHUSDT-trades-2024-02-29.zip.CHECKSUM")


@pytest.mark.parametrize("text", [
    f"{SHA}  BTCUSDT-trades-2025-09-01.zip\n",
    f"{SHA.upper()}  BTCUSDT-trades-2025-09-01.zip",
    f"\n{SHA} *BTCUSDT-trades-2025-09-01.zip\r\n\n",
])
def test_parse_checksum_accepts_sha256sum_lines(text: str) -> None:
    assert parse_checksum(text, "BTCUSDT-trades-2025-09-01.zip") == SHA


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected one line"),
    (f"{SHA}  a.zip\n{SHA}  b.zip", "expected one line"),
    (f"{SHA[:-1]}  BTCUSDT-trades-2025-09-01.zip", "expected '<sha256>  <file name>'"),
    (f"{SHA[:-1]}g  BTCUSDT-trades-2025-09-01.zip", "expected '<sha256>  <file name>'"),
    (SHA, "expected '<sha256>  <file name>'"),
    (f"{SHA}  ETHUSDT-trades-2025-09-01.zip", "expected 'BTCUSDT-trades-2025-09-01.zip'"),
    ("<Error><Code>NoSuchKey</Code></Error>", "expected '<sha256>  <file name>'"),
])
def test_parse_checksum_rejects_malformed_files(text: str, message: str) -> None:
    with pytest.raises(DumpFormatError, match=message):
        parse_checksum(text, "BTCUSDT-trades-2025-09-01.zip")


@pytest.mark.parametrize(("value", "unit"), [
    (1_500_000_000_000, "ms"),  # 2017 in milliseconds
    (1_735_689_599_999, "ms"),  # the last millisecond of 2024
    (1_756_684_800_000, "ms"),  # a 2025 value printed in milliseconds: magnitude, not date
    (1_735_689_600_000_000, "us"),  # 2025-01-01 in microseconds
    (1_500_000_000_000_000, "us"),  # a 2017 value printed in microseconds
    (99_999_999_999_999, "ms"),
    (100_000_000_000_000, "us"),
])
def test_time_unit_is_detected_from_the_magnitude(value: int, unit: str) -> None:
    assert detect_time_unit(value) == unit


def test_time_unit_rejects_non_positive_values() -> None:
    with pytest.raises(DumpFormatError):
        detect_time_unit(0)


def test_parse_row_gives_exact_typed_values() -> None:
    row = parse_row("4732418560,108246.01000000,0.00010000,10.82460100,1756684800012345,True,True")
    assert row.trade_id == 4732418560
    assert row.price == Decimal("108246.01000000")
    assert str(row.price) == "108246.01000000"  # every printed decimal place kept
    assert row.quantity == Decimal("0.0001")
    assert row.quote_quantity == Decimal("10.824601")
    assert row.trade_time == datetime(2025, 9, 1, 0, 0, 0, 12_345, tzinfo=UTC)
    assert row.is_buyer_maker is True
    ms = parse_row("12,0.00000001,99999999.99999999,0.99999999,1735689599999,False,True\r\n")
    assert ms.trade_time == datetime(2024, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert ms.price == Decimal("1E-8")
    assert ms.is_buyer_maker is False


@pytest.mark.parametrize("line", [
    "1,2,3,4,5,True",
    "x,1.0,1.0,1.0,1756684800012345,True,True",
    "1,abc,1.0,1.0,1756684800012345,True,True",
    "1,-1.0,1.0,1.0,1756684800012345,True,True",
    "1,1.0,NaN,1.0,1756684800012345,True,True",
    "1,1.0,1.0,1.0,1756684800012345,yes,True",
])
def test_parse_row_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(DumpFormatError):
        parse_row(line)


def _copy_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _convert(symbol: str, day: date, data: bytes, chunk: int,
             skip: IdRanges | None = None) -> tuple[str, RowConverter]:
    converter = RowConverter(symbol, day, skip)
    parts = [converter.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    parts.append(converter.finish())
    return "".join(parts), converter


@pytest.mark.parametrize("unit", ["ms", "us"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_converter_agrees_with_parse_row_for_any_chunking(unit: str, chunk: int) -> None:
    day = date(2025, 3, 4)
    trades = list(generate_trades("BTCUSDT", day, 300, unit=unit))  # type: ignore[arg-type]
    lines = [format_row(t, unit) for t in trades]  # type: ignore[arg-type]
    text, converter = _convert("BTCUSDT", day, "".join(lines).encode(), chunk)

    rows = _copy_rows(text)
    assert (converter.rows, converter.skipped, converter.unit) == (300, 0, unit)
    assert (converter.first_id, converter.last_id) == (trades[0].trade_id, trades[-1].trade_id)
    for line, trade, row in zip(lines, trades, rows, strict=True):
        typed = parse_row(line)
        symbol, trade_id, price, quantity, trade_time, event_time, maker = row
        assert symbol == "BTCUSDT"
        assert int(trade_id) == typed.trade_id == trade.trade_id
        assert Decimal(price) == typed.price == trade.price
        assert Decimal(quantity) == typed.quantity == trade.quantity
        assert datetime.fromisoformat(trade_time) == typed.trade_time == trade.trade_time
        assert event_time == ""  # NULL in COPY's CSV format
        assert (maker == "True") is typed.is_buyer_maker is trade.is_buyer_maker


def test_converter_skips_stored_ids_and_handles_header_and_crlf() -> None:
    day = date(2025, 9, 1)
    trades = list(generate_trades("ETHUSDT", day, 50, first_id=100))
    data = ("id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch\r\n"
            + "".join(format_row(t, "us").replace("\n", "\r\n") for t in trades)).encode()
    text, converter = _convert("ETHUSDT", day, data, 33, IdRanges([(90, 104), (120, 120)]))

    kept = [int(row[1]) for row in _copy_rows(text)]
    assert kept == [t.trade_id for t in trades if not (t.trade_id <= 104 or t.trade_id == 120)]
    assert (converter.rows, converter.skipped) == (50, 6)


def test_converter_rejects_a_time_outside_the_day() -> None:
    day = date(2025, 9, 1)
    start = day_start_us(day)
    inside = DumpTrade(1, 10**8, 10**8, start, True)
    next_day = DumpTrade(2, 10**8, 10**8, start + 86_400_000_000, True)
    with pytest.raises(DumpFormatError, match="line 2: time outside 2025-09-01"):
        _convert("BTCUSDT", day, (format_row(inside, "us") + format_row(next_day, "us")).encode(),
                 1 << 20)


def test_converter_rejects_mixed_units() -> None:
    day = date(2025, 9, 1)
    start = day_start_us(day)
    micro = DumpTrade(1, 10**8, 10**8, start + 1_000, True)
    data = (format_row(micro, "us") + format_row(micro, "ms")).encode()
    with pytest.raises(DumpFormatError, match="time outside"):
        _convert("BTCUSDT", day, data, 1 << 20)


@pytest.mark.parametrize("line", [
    "1,1.0,1.0,1.0,1756684800012345,True\n",
    "1,\"1.0\",1.0,1.0,1756684800012345,True,True\n",
    "1,1.0,1.0,1.0,17566848x0012345,True,True\n",
])
def test_converter_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(DumpFormatError):
        _convert("BTCUSDT", date(2025, 9, 1), line.encode(), 1 << 20)


def test_id_ranges() -> None:
    ranges = IdRanges([(10, 20), (1, 3), (25, 25)])
    assert [n for n in range(0, 30) if n in ranges] == [1, 2, 3, *range(10, 21), 25]
    assert (len(ranges), ranges.count()) == (3, 15)
    with pytest.raises(ValueError, match="overlap"):
        IdRanges([(1, 5), (5, 9)])


def test_generated_dumps_have_binance_format(tmp_path: Path) -> None:
    day = date(2024, 6, 1)
    trades = [DumpTrade(7, 6_543_210_000_000, 1_000_000, day_start_us(day) + 1_000, False)]
    files = write_dump(tmp_path, "BTCUSDT", day, trades)

    assert files.zip_path == tmp_path / "BTCUSDT" / "BTCUSDT-trades-2024-06-01.zip"
    assert files.checksum_path.read_text() == (
        f"{files.sha256}  BTCUSDT-trades-2024-06-01.zip\n")
    with zipfile.ZipFile(files.zip_path) as archive:
        assert archive.namelist() == ["BTCUSDT-trades-2024-06-01.csv"]
        assert archive.read("BTCUSDT-trades-2024-06-01.csv") == (
            b"7,65432.10000000,0.01000000,654.32100000,1717200000001,False,True\n")


def test_generated_faults(tmp_path: Path) -> None:
    day = date(2025, 9, 1)
    trades = list(generate_trades("BTCUSDT", day, 100))
    bad_crc = write_dump(tmp_path / "crc", "BTCUSDT", day, trades, fault="bad-crc")
    with zipfile.ZipFile(bad_crc.zip_path) as archive, pytest.raises(zipfile.BadZipFile,
                                                                     match="CRC"):
        archive.read(archive.namelist()[0])
    truncated = write_dump(tmp_path / "cut", "BTCUSDT", day, trades, fault="truncated")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(truncated.zip_path)
