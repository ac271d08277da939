"""The quality gate: nothing reaches the lake or the warehouse unless every check passes.

Checks on the day's facts (the small fact table, collected once as Arrow: a few thousand rows
per symbol and day, checked with pyarrow in milliseconds) and an exact
reconciliation with PostgreSQL's own totals for the day (a GROUP BY over the raw table):
row count > 0 (unless allowed empty), no null keys, one row per (symbol, minute),
min ≤ open, close, avg ≤ max, per-symbol trade counts and total quantities equal to the raw
store's, and a trade-id continuity report per symbol (missing ids inside the day's id range;
more than GAP_FAIL_THRESHOLD missing ids for a symbol fails the gate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.rows
import pyarrow as pa
import pyarrow.compute as pc

from etl.utils import day_bounds

logger = logging.getLogger(__name__)


class QualityGateError(Exception):
    """The day failed its quality gate; nothing was published."""


@dataclass(frozen=True)
class SymbolTotals:
    trade_count: int
    total_quantity: Decimal
    first_trade_id: int | None = None
    last_trade_id: int | None = None

    @property
    def missing_ids(self) -> int:
        if self.first_trade_id is None or self.last_trade_id is None:
            return 0
        return self.last_trade_id - self.first_trade_id + 1 - self.trade_count


RAW_TOTALS_SQL = """
SELECT symbol, count(*) AS trade_count, sum(quantity) AS total_quantity,
       min(trade_id) AS first_trade_id, max(trade_id) AS last_trade_id
FROM public.trades
WHERE trade_time >= %(start)s AND trade_time < %(end)s
GROUP BY symbol
ORDER BY symbol
"""


def raw_totals(conn: psycopg.Connection, day: date) -> dict[str, SymbolTotals]:
    """PostgreSQL's own per-symbol totals for the day (the reconciliation's reference)."""
    start, end = day_bounds(day)
    rows = conn.execute(RAW_TOTALS_SQL, {"start": start, "end": end}).fetchall()
    return {
        str(symbol): SymbolTotals(int(count), Decimal(quantity), int(first), int(last))
        for symbol, count, quantity, first, last in rows
    }


def fact_totals(facts: pa.Table) -> dict[str, SymbolTotals]:
    """Per-symbol trade counts and quantities as the facts say (sums in 256-bit decimals:
    exact, they cannot overflow)."""
    wide = pa.table(
        {
            "symbol": facts["symbol"],
            "trade_count": facts["trade_count"],
            "total_quantity": pc.cast(facts["total_quantity"], pa.decimal256(76, 8)),
        }
    )
    sums = wide.group_by("symbol").aggregate([("trade_count", "sum"), ("total_quantity", "sum")])
    return {
        str(row["symbol"]): SymbolTotals(int(row["trade_count_sum"] or 0),
                                         Decimal(row["total_quantity_sum"] or 0))
        for row in sums.to_pylist()
        if row["symbol"] is not None
    }


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    """How many rows a boolean mask selects (a null counts as selected: a rule that cannot be
    evaluated is broken)."""
    return int(pc.sum(pc.fill_null(mask, True).cast(pa.int64())).as_py() or 0)


def fact_violations(facts: pa.Table) -> dict[str, int]:
    """Counts of rows breaking each structural rule (all zero for a good day)."""
    keys = facts.select(["symbol", "trade_minute"])
    distinct_keys = keys.group_by(["symbol", "trade_minute"]).aggregate([]).num_rows
    # every price column on one scale so that they compare exactly
    common = pa.decimal128(38, 12)
    price = {name: pc.cast(facts[name], common)
             for name in ("min_price", "max_price", "avg_price", "open_price", "close_price")}
    bad_range = pc.or_(
        pc.or_(
            pc.or_(pc.greater(price["min_price"], price["open_price"]),
                   pc.greater(price["min_price"], price["close_price"])),
            pc.greater(price["min_price"], price["avg_price"]),
        ),
        pc.or_(
            pc.or_(pc.greater(price["open_price"], price["max_price"]),
                   pc.greater(price["close_price"], price["max_price"])),
            pc.greater(price["avg_price"], price["max_price"]),
        ),
    )
    return {
        "rows": facts.num_rows,
        "null_keys": _count(pc.or_(pc.is_null(facts["symbol"]),
                                   pc.is_null(facts["trade_minute"]))),
        "duplicate_keys": facts.num_rows - distinct_keys,
        "price_range": _count(bad_range),
        "empty_minutes": _count(pc.less_equal(facts["trade_count"], 0)),
    }


def evaluate(
    day: date,
    violations: dict[str, int],
    facts_by_symbol: dict[str, SymbolTotals],
    raw_by_symbol: dict[str, SymbolTotals],
    *,
    allow_empty: bool = False,
    gap_fail_threshold: int = 0,
) -> dict[str, Any]:
    """The gate's verdict as a JSON-ready report (pure: unit-testable without services)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"name": name, "passed": passed, "detail": detail})

    rows_read = sum(t.trade_count for t in facts_by_symbol.values())
    check(
        "row_count",
        rows_read > 0 or allow_empty,
        f"{rows_read} trade(s) in the facts" + (" (empty day allowed)" if allow_empty else ""),
    )
    check("null_keys", violations["null_keys"] == 0, f"{violations['null_keys']} row(s)")
    check(
        "unique_symbol_minute",
        violations["duplicate_keys"] == 0,
        f"{violations['duplicate_keys']} duplicate row(s)",
    )
    check(
        "price_range",
        violations["price_range"] == 0,
        f"{violations['price_range']} row(s) outside min ≤ open, close, avg ≤ max",
    )
    check(
        "positive_trade_count",
        violations["empty_minutes"] == 0,
        f"{violations['empty_minutes']} row(s) with no trades",
    )
    symbols: dict[str, Any] = {}
    mismatched: list[str] = []
    gapped: list[str] = []
    for symbol in sorted(set(facts_by_symbol) | set(raw_by_symbol)):
        fact = facts_by_symbol.get(symbol, SymbolTotals(0, Decimal(0)))
        raw = raw_by_symbol.get(symbol, SymbolTotals(0, Decimal(0)))
        matches = fact.trade_count == raw.trade_count and fact.total_quantity == raw.total_quantity
        if not matches:
            mismatched.append(symbol)
        if raw.missing_ids > gap_fail_threshold:
            gapped.append(symbol)
        symbols[symbol] = {
            "fact_trade_count": fact.trade_count,
            "raw_trade_count": raw.trade_count,
            "fact_total_quantity": str(fact.total_quantity),
            "raw_total_quantity": str(raw.total_quantity),
            "reconciled": matches,
            "first_trade_id": raw.first_trade_id,
            "last_trade_id": raw.last_trade_id,
            "missing_trade_ids": raw.missing_ids,
        }
    check(
        "reconciliation",
        not mismatched,
        "counts and quantities equal PostgreSQL's"
        if not mismatched
        else f"differs from PostgreSQL for {', '.join(mismatched)}",
    )
    check(
        "trade_id_continuity",
        not gapped,
        f"no symbol has more than {gap_fail_threshold} missing trade id(s)"
        if not gapped
        else f"more than {gap_fail_threshold} missing trade id(s): {', '.join(gapped)}",
    )
    passed = all(item["passed"] for item in checks)
    return {
        "day": day.isoformat(),
        "passed": passed,
        "checked_at": datetime.now(UTC).isoformat(),
        "rows_read": rows_read,
        "fact_rows": violations["rows"],
        "gap_fail_threshold": gap_fail_threshold,
        "checks": checks,
        "symbols": symbols,
    }


def log_report(report: dict[str, Any]) -> None:
    level = logging.INFO if report["passed"] else logging.ERROR
    logger.log(level, "quality gate for %s: %s", report["day"],
               "passed" if report["passed"] else "FAILED")
    for item in report["checks"]:
        logger.log(level if not item["passed"] else logging.INFO, "  %-22s %s  %s",
                   item["name"], "ok  " if item["passed"] else "FAIL", item["detail"])


def raise_if_failed(report: dict[str, Any]) -> None:
    if not report.get("passed"):
        failed = [item["name"] for item in report.get("checks", []) if not item["passed"]]
        raise QualityGateError(
            f"quality gate failed for {report.get('day')}: {', '.join(failed) or 'no verdict'}"
        )


# --- live bars against the day's facts (one definition of a fact row, checked) --------------

LIVE_BAR_COLUMNS = (
    "min_price", "max_price", "avg_price", "total_quantity", "total_trade_value", "trade_count",
    "open_price", "close_price", "vwap", "taker_buy_quantity",
)
LIVE_BARS_SQL = f"""
SELECT symbol, trade_minute, {', '.join(LIVE_BAR_COLUMNS)}, complete
FROM public.bars_1m
WHERE trade_minute >= %(start)s AND trade_minute < %(end)s
ORDER BY symbol, trade_minute
"""
LIVE_DIFFS_SHOWN = 20


def live_bars_of_day(conn: psycopg.Connection, day: date) -> list[dict[str, Any]]:
    """The live query's bars (bars_1m) of the day, as dicts of exact values."""
    start, end = day_bounds(day)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(LIVE_BARS_SQL, {"start": start, "end": end}).fetchall()


def compare_live_bars(facts: pa.Table, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """The check entry `live_bars_equal_facts`: every live bar of the day against its fact row,
    column for column (pure). Both come from etl.transform's one finaliser, so a difference in
    a complete bar (or a complete bar without a fact row) is a defect and fails; a provisional
    bar (`complete = false`: the live query had not seen every trade yet) that differs is
    reported, not failed; a day without bars is reported as such."""
    by_key = {(row["symbol"], row["trade_minute"]): row for row in facts.to_pylist()}
    differing: list[dict[str, Any]] = []
    compared = complete = 0
    for bar in bars:
        key = (bar["symbol"], bar["trade_minute"])
        fact = by_key.get(key)
        complete += bool(bar["complete"])
        columns = (list(LIVE_BAR_COLUMNS) if fact is None else
                   [c for c in LIVE_BAR_COLUMNS if bar[c] != fact[c]])
        compared += fact is not None
        if columns:
            differing.append({"symbol": key[0], "minute": key[1].isoformat(),
                              "complete": bool(bar["complete"]),
                              "columns": columns if fact is not None else ["no fact row"]})
    defects = [d for d in differing if d["complete"]]
    if not bars:
        detail = "no live bars for this day (the live query did not run): nothing compared"
    elif not differing:
        detail = f"{compared} bar(s) equal their fact rows column for column"
    else:
        named = "; ".join(f"{d['symbol']} {d['minute']}: {', '.join(d['columns'])}"
                          for d in (defects or differing)[:5])
        detail = (f"{len(defects)} complete and {len(differing) - len(defects)} provisional "
                  f"bar(s) of {len(bars)} differ from the facts: {named}")
    return {
        "name": "live_bars_equal_facts",
        "passed": not defects,
        "detail": detail,
        "live_bars": {"bars": len(bars), "complete": complete, "compared": compared,
                      "facts_without_bar": len(by_key) - compared,
                      "differing": differing[:LIVE_DIFFS_SHOWN],
                      "differing_total": len(differing)},
    }


def add_check(report: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The report with one more check entry (details beside the checks), verdict updated."""
    details = {k: v for k, v in entry.items() if k not in ("name", "passed", "detail")}
    report["checks"].append({k: entry[k] for k in ("name", "passed", "detail")})
    report.update(details)
    report["passed"] = all(item["passed"] for item in report["checks"])
    return report
