"""The quality report's comparison of live bars with the day's facts (pure, no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from etl.quality import LIVE_BAR_COLUMNS, add_check, compare_live_bars

M0 = datetime(2025, 9, 10, 4, 0, tzinfo=UTC)
M1 = datetime(2025, 9, 10, 4, 1, tzinfo=UTC)


def fact(minute: datetime, price: str) -> dict[str, Any]:
    value = Decimal(price)
    return {"symbol": "BTCUSDT", "trade_minute": minute, "min_price": value, "max_price": value,
            "avg_price": value, "total_quantity": Decimal(1), "total_trade_value": value,
            "trade_count": 1, "open_price": value, "close_price": value, "vwap": value,
            "taker_buy_quantity": Decimal(0)}


def facts(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows))


def bar(row: dict[str, Any], complete: bool, **changes: Any) -> dict[str, Any]:
    return {**{c: row[c] for c in ("symbol", "trade_minute", *LIVE_BAR_COLUMNS)},
            "complete": complete, **changes}


def test_equal_bars_pass_and_say_how_many_were_compared() -> None:
    a, b = fact(M0, "100.5"), fact(M1, "101")
    entry = compare_live_bars(facts(a, b), [bar(a, True), bar(b, False)])
    assert entry["passed"] is True
    assert entry["detail"] == "2 bar(s) equal their fact rows column for column"
    assert entry["live_bars"]["compared"] == 2


def test_a_complete_bar_that_differs_fails_and_names_minute_and_columns() -> None:
    a, b = fact(M0, "100.5"), fact(M1, "101")
    entry = compare_live_bars(facts(a, b), [
        bar(a, True, close_price=Decimal("100.4"), trade_count=2),
        bar(b, False, vwap=Decimal("1")),  # provisional: reported, not failed
    ])
    assert entry["passed"] is False
    assert "BTCUSDT 2025-09-10T04:00:00+00:00: trade_count, close_price" in entry["detail"]
    assert "1 complete and 1 provisional" in entry["detail"]
    assert entry["live_bars"]["differing"][1] == {
        "symbol": "BTCUSDT", "minute": M1.isoformat(), "complete": False, "columns": ["vwap"]}


def test_a_complete_bar_without_a_fact_row_fails() -> None:
    entry = compare_live_bars(facts(fact(M0, "1")), [bar(fact(M1, "1"), True)])
    assert entry["passed"] is False
    assert entry["live_bars"]["differing"][0]["columns"] == ["no fact row"]


def test_a_day_without_bars_is_reported_not_failed() -> None:
    entry = compare_live_bars(facts(fact(M0, "1")), [])
    assert entry["passed"] is True
    assert "no live bars" in entry["detail"]
    report = add_check({"passed": True, "checks": []}, entry)
    assert report["passed"] is True
    assert report["checks"] == [{"name": "live_bars_equal_facts", "passed": True,
                                 "detail": entry["detail"]}]
    assert report["live_bars"]["facts_without_bar"] == 1
