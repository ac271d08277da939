"""The quality gate's rules: the pure verdict, and the structural checks on the Arrow facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from etl.quality import (
    QualityGateError,
    SymbolTotals,
    evaluate,
    fact_totals,
    fact_violations,
    raise_if_failed,
)

DAY = date(2025, 9, 10)
CLEAN = {"rows": 2, "null_keys": 0, "duplicate_keys": 0, "price_range": 0, "empty_minutes": 0}


def verdicts(report: dict[str, object]) -> dict[str, bool]:
    return {item["name"]: item["passed"] for item in report["checks"]}  # type: ignore[attr-defined]


def test_a_good_day_passes() -> None:
    totals = {"BTCUSDT": SymbolTotals(3, Decimal("1.5"), 100, 102)}
    report = evaluate(DAY, CLEAN, {"BTCUSDT": SymbolTotals(3, Decimal("1.50"))}, totals)
    assert report["passed"] is True
    assert report["rows_read"] == 3
    assert report["symbols"]["BTCUSDT"]["missing_trade_ids"] == 0
    raise_if_failed(report)


def test_reconciliation_is_exact_to_the_last_decimal() -> None:
    raw = {"BTCUSDT": SymbolTotals(3, Decimal("1.50000001"), 1, 3)}
    report = evaluate(DAY, CLEAN, {"BTCUSDT": SymbolTotals(3, Decimal("1.5"))}, raw)
    assert verdicts(report)["reconciliation"] is False
    assert report["passed"] is False
    with pytest.raises(QualityGateError, match="reconciliation"):
        raise_if_failed(report)


def test_a_symbol_missing_from_the_facts_fails_reconciliation() -> None:
    raw = {"ETHUSDT": SymbolTotals(1, Decimal("2"), 7, 7)}
    report = evaluate(DAY, CLEAN, {}, raw, allow_empty=True)
    assert verdicts(report)["reconciliation"] is False


def test_empty_day_fails_unless_allowed() -> None:
    empty = {**CLEAN, "rows": 0}
    assert verdicts(evaluate(DAY, empty, {}, {}))["row_count"] is False
    allowed = evaluate(DAY, empty, {}, {}, allow_empty=True)
    assert allowed["passed"] is True


def test_gap_threshold() -> None:
    raw = {"BTCUSDT": SymbolTotals(8, Decimal("8"), 1, 10)}  # ids 1..10 with 2 missing
    facts = {"BTCUSDT": SymbolTotals(8, Decimal("8"))}
    assert raw["BTCUSDT"].missing_ids == 2
    assert evaluate(DAY, CLEAN, facts, raw, gap_fail_threshold=1)["passed"] is False
    assert evaluate(DAY, CLEAN, facts, raw, gap_fail_threshold=2)["passed"] is True


@pytest.mark.parametrize("rule", ["null_keys", "duplicate_keys", "price_range", "empty_minutes"])
def test_each_structural_rule_fails_the_gate(rule: str) -> None:
    totals = {"BTCUSDT": SymbolTotals(1, Decimal("1"), 5, 5)}
    report = evaluate(DAY, {**CLEAN, rule: 1}, totals, totals)
    assert report["passed"] is False


FACT_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("trade_minute", pa.timestamp("us", tz="UTC")),
        ("min_price", pa.decimal128(30, 8)),
        ("max_price", pa.decimal128(30, 8)),
        ("avg_price", pa.decimal128(30, 12)),
        ("open_price", pa.decimal128(30, 8)),
        ("close_price", pa.decimal128(30, 8)),
        ("trade_count", pa.int64()),
        ("total_quantity", pa.decimal128(38, 8)),
    ]
)
COLUMNS = FACT_SCHEMA.names


def fact_table(rows: Sequence[tuple[object, ...]]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(COLUMNS, row, strict=True)) for row in rows],
                                schema=FACT_SCHEMA)


def test_fact_violations_counts_each_broken_rule() -> None:
    minute = datetime(2025, 9, 10, 0, 1, tzinfo=UTC)
    d = Decimal
    rows = [
        ("BTCUSDT", minute, d(1), d(3), d(2), d(1), d(3), 2, d("1.5")),  # fine
        ("BTCUSDT", minute, d(1), d(3), d(2), d(1), d(3), 1, d("0.5")),  # duplicate key
        (None, minute, d(1), d(1), d(1), d(1), d(1), 1, d(1)),  # null key
        ("ETHUSDT", minute, d(2), d(3), d(2), d(1), d(3), 1, d(1)),  # open below min
        ("SOLUSDT", minute, d(1), d(1), d(1), d(1), d(1), 0, d(0)),  # no trades
    ]
    facts = fact_table(rows)
    assert fact_violations(facts) == {
        "rows": 5, "null_keys": 1, "duplicate_keys": 1, "price_range": 1, "empty_minutes": 1,
    }
    totals = fact_totals(facts)
    assert totals["BTCUSDT"] == SymbolTotals(3, Decimal("2.0"))
    assert None not in totals


def test_price_rules_compare_exactly_across_scales() -> None:
    """avg_price has 12 decimal places, the others 8: compared on one scale, a difference in
    the 12th place counts, and a NULL price cannot pass a rule it cannot be checked against."""
    minute = datetime(2025, 9, 10, 0, 1, tzinfo=UTC)
    d = Decimal
    one = ("X", minute, d("1.00000000"), d("2.00000000"), d("1.000000000001"),
           d("1.00000000"), d("2.00000000"), 2, d("1"))
    assert fact_violations(fact_table([one]))["price_range"] == 0
    above = (*one[:4], d("2.000000000001"), *one[5:])
    below = (*one[:4], d("0.999999999999"), *one[5:])
    missing = (*one[:5], None, *one[6:])
    assert fact_violations(fact_table([above, below, missing]))["price_range"] == 3


def test_fact_totals_are_exact_beyond_128_bits() -> None:
    """Per-symbol quantity sums that would overflow decimal(38,8) stay exact."""
    minute = datetime(2025, 9, 10, 0, 1, tzinfo=UTC)
    big = Decimal("999999999999999999999999999999.99999999")  # the largest decimal(38,8)
    row = ("PEPEUSDT", minute, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(1), 1, big)
    totals = fact_totals(fact_table([row, row, row]))
    exact = Decimal("2999999999999999999999999999999.99999997")
    assert totals["PEPEUSDT"] == SymbolTotals(3, exact)
