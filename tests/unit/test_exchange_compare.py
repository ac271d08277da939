"""The exchange check's comparison, its policies, and the replay's klines it is tested against.

Facts are computed here by hand from generated trades (plain Decimal sums, first and last by
time then id); the klines come from the replay's own builder, as the feed serves them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from binance_etl.klines import Kline, parse_kline
from binance_etl.replay.dumps import DumpTrade, generate_trades, write_klines_dump
from binance_etl.replay.klines import TradeUnits, build_klines, csv_lines
from etl.exchange import add_to_report, check_day, compare, fact_rows, rows_by_symbol
from etl.klines_source import DayKlines, SymbolKlines, day_ms, read_klines_zip, whole_day

DAY = date(2025, 3, 4)
START_MS, END_MS = day_ms(DAY)


def facts_of(symbol: str, trades: list[DumpTrade]) -> list[dict[str, Any]]:
    """Fact rows as the batch defines them, computed independently here."""
    by_minute: dict[datetime, list[DumpTrade]] = defaultdict(list)
    for trade in trades:
        by_minute[trade.trade_time.replace(second=0, microsecond=0)].append(trade)
    rows = []
    for minute, group in sorted(by_minute.items()):
        ordered = sorted(group, key=lambda t: (t.time_us, t.trade_id))
        rows.append({
            "symbol": symbol, "trade_minute": minute,
            "open_price": ordered[0].price, "close_price": ordered[-1].price,
            "max_price": max(t.price for t in group), "min_price": min(t.price for t in group),
            "total_quantity": sum((t.quantity for t in group), Decimal(0)),
            "taker_buy_quantity": sum((t.quantity for t in group if not t.is_buyer_maker),
                                      Decimal(0)),
            "trade_count": len(group),
            "total_trade_value": sum((t.price * t.quantity for t in group), Decimal(0)),
        })
    return rows


def klines_of(trades: list[DumpTrade], fault: Any = None) -> list[Kline]:
    units = (TradeUnits(t.time_us // 1000, t.price_e8, t.quantity_e8, t.is_buyer_maker)
             for t in trades)
    rows = build_klines(units, START_MS, END_MS, fault=fault)
    return [parse_kline(line.split(",")) for line in csv_lines(rows, "ms").splitlines()]


@pytest.fixture(scope="module")
def trades() -> list[DumpTrade]:
    return list(generate_trades("BTCUSDT", DAY, 600, first_id=10))


def test_replay_klines_equal_hand_computed_facts(trades: list[DumpTrade]) -> None:
    klines = klines_of(trades)
    assert whole_day(klines, DAY) is None
    assert sum(k.trades for k in klines) == 600
    assert any(k.trades == 0 for k in klines)  # quiet minutes have klines with 0 trades
    result = compare(rows_by_symbol(facts_of("BTCUSDT", trades)), {"BTCUSDT": klines})
    assert result.passed
    assert result.symbols["BTCUSDT"].minutes_compared == 1440
    assert result.symbols["BTCUSDT"].their_trades == 600


def test_each_difference_is_named_by_minute_and_column(trades: list[DumpTrade]) -> None:
    rows = facts_of("BTCUSDT", trades)
    klines = {"BTCUSDT": klines_of(trades)}
    changed = [dict(row) for row in rows]
    changed[3]["close_price"] += Decimal("0.01")
    changed[7]["trade_count"] += 1  # an extra trade
    del changed[5]  # a whole minute lost
    result = compare(rows_by_symbol(changed), klines)
    by_column = result.by_column()
    close = by_column["close"][0]
    assert (close.minute_ms, Decimal(str(close.ours)) - Decimal(str(close.theirs))) == (
        to_ms(rows[3]["trade_minute"]), Decimal("0.01"))
    counts = {m.minute_ms: (m.ours, m.theirs) for m in by_column["trades"]}
    assert counts == {to_ms(rows[5]["trade_minute"]): (0, rows[5]["trade_count"]),
                      to_ms(rows[7]["trade_minute"]): (rows[7]["trade_count"] + 1,
                                                       rows[7]["trade_count"])}
    totals = result.symbols["BTCUSDT"]
    assert (totals.lost_trades, totals.extra_trades, totals.minutes_mismatched) == (
        rows[5]["trade_count"], 1, 3)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def kline(trades: int, quote: str, **prices: str) -> Kline:
    price = Decimal(prices.get("price", "100"))
    return Kline(START_MS, price, price, price, price, Decimal("1"), Decimal(quote), trades,
                 Decimal("0.5"))


def fact(trades: int, value: str) -> dict[str, Any]:
    price = Decimal("100")
    return {"symbol": "X", "trade_minute": datetime.fromtimestamp(START_MS / 1000, UTC),
            "open_price": price, "close_price": price, "max_price": price, "min_price": price,
            "total_quantity": Decimal(1), "taker_buy_quantity": Decimal("0.5"),
            "trade_count": trades, "total_trade_value": Decimal(value)}


@pytest.mark.parametrize(
    ("trades", "ours", "theirs", "agrees"),
    [
        (3, "100.0000000299999999", "100", True),  # just under 3 × 1e-8
        (3, "100.00000003", "100", True),  # exactly 3 × 1e-8: allowed
        (3, "100.0000000300000001", "100", False),
        (1, "99.99999999", "100", True),
        (1, "99.99999998", "100", False),
    ],
)
def test_quote_volume_within_per_trade_rounding(trades: int, ours: str, theirs: str,
                                                agrees: bool) -> None:
    result = compare(rows_by_symbol([fact(trades, ours)]), {"X": [kline(trades, theirs)]})
    assert result.passed is agrees
    if not agrees:
        assert [m.column for m in result.mismatches] == ["quote_volume"]


def facts_table(rows: list[dict[str, Any]]) -> pa.Table:
    decimal = pa.decimal128(38, 16)
    return pa.table({
        "symbol": [r["symbol"] for r in rows],
        "trade_minute": pa.array([r["trade_minute"] for r in rows], pa.timestamp("us", "UTC")),
        **{name: pa.array([r[name] for r in rows], decimal)
           for name in ("open_price", "close_price", "max_price", "min_price",
                        "total_quantity", "taker_buy_quantity", "total_trade_value")},
        "trade_count": pa.array([r["trade_count"] for r in rows], pa.int64()),
    })


def test_policies_and_the_report(trades: list[DumpTrade]) -> None:
    facts = facts_table(facts_of("BTCUSDT", trades))
    from_arrow = fact_rows(facts)["BTCUSDT"]
    by_hand = rows_by_symbol(facts_of("BTCUSDT", trades))["BTCUSDT"]
    assert from_arrow.keys() == by_hand.keys()
    assert all(row[name] == by_hand[minute][name]
               for minute, row in from_arrow.items() for name in row)
    good = DayKlines(DAY, {"BTCUSDT": SymbolKlines(klines_of(trades), "dump (µs)")})
    bad = DayKlines(DAY, {"BTCUSDT": SymbolKlines(klines_of(trades, "trade-missing"), "rest")})
    none = DayKlines(DAY, unavailable={"BTCUSDT": "dump not published; REST unreachable"})

    passed = check_day(facts, good, "fail")
    assert (passed["passed"], passed["status"]) == (True, "passed")
    failed = check_day(facts, bad, "fail")
    assert (failed["passed"], failed["status"]) == (False, "failed")
    assert "1 lost trade(s)" in failed["detail"]
    assert failed["report"]["mismatches"]["trades"]["total"] == 1
    assert failed["report"]["symbols"]["BTCUSDT"]["lost_trades"] == 1
    warned = check_day(facts, bad, "warn")
    assert (warned["passed"], warned["status"]) == (True, "warned")
    skipped = check_day(facts, none, "fail")
    assert (skipped["passed"], skipped["status"]) == (True, "skipped")
    assert "REST unreachable" in skipped["detail"]
    assert check_day(facts, None, "off")["status"] == "off"

    report: dict[str, Any] = {"passed": True, "checks": [{"name": "row_count", "passed": True}]}
    add_to_report(report, failed)
    assert report["passed"] is False
    assert report["exchange"]["status"] == "failed"
    assert [check["name"] for check in report["checks"]] == ["row_count", "exchange"]


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_klines_dump_time_unit_detected_per_file(tmp_path: Path, trades: list[DumpTrade],
                                                 unit: Any) -> None:
    files = write_klines_dump(tmp_path, "BTCUSDT", DAY, trades, unit=unit)
    klines, detected = read_klines_zip(files.zip_path)
    assert detected == unit
    assert klines == klines_of(trades)
    assert klines[0].open_ms == START_MS
    assert klines[-1].open_ms == END_MS - 60_000


def test_partial_day_is_not_whole() -> None:
    assert whole_day([], DAY) == "0 of 1440 minutes"
    units = [TradeUnits(START_MS + 5, 100, 1, False)]
    rows = build_klines(units, START_MS, START_MS + 600_000)
    klines = [parse_kline(line.split(",")) for line in csv_lines(rows, "ms").splitlines()]
    assert whole_day(klines, DAY) == "10 of 1440 minutes"
    assert klines[1].close == klines[0].close  # an empty minute repeats the previous close
    assert (klines[1].trades, klines[1].volume) == (0, 0)
    assert START_MS + timedelta(days=1) // timedelta(milliseconds=1) == END_MS
