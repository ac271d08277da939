"""The exchange check: the day's facts, minute by minute, against Binance's own 1m klines.

For each symbol and minute, these must be equal exactly (fact column ← kline field):

    open_price ← open        max_price ← high         min_price ← low       close_price ← close
    total_quantity ← volume  trade_count ← number of trades   taker_buy_quantity ← taker buy base

and `total_trade_value` (Σ price × quantity, exact) agrees with the kline's quote asset volume
within `n × 1e-8` for a minute of n trades: Binance sums each trade's quote quantity *after*
cutting it to 8 decimals (the `quoteQty` of its trade dumps and REST), so each trade may differ
from the exact product by less than 1e-8 (whether Binance rounds or truncates; the replay
truncates), and a minute by less than n × 1e-8. Prices are compared only where both sides have
trades (an empty kline repeats the previous close).

A minute where Binance counts more trades than the facts hold has lost trades; fewer means
trades that should not be there. Klines with 0 trades are expected for quiet minutes.

`EXCHANGE_CHECK`: `fail` fails the gate on a mismatch, `warn` reports it and lets the day be
published, `off` does not fetch klines at all. A symbol whose klines cannot be had is
"skipped" with the reason, and the gate goes on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from binance_etl.klines import Kline
from etl.klines_source import DayKlines, day_ms

logger = logging.getLogger(__name__)

CHECK_NAME = "exchange"
SHOWN_PER_COLUMN = 20
QUOTE_STEP = Decimal("1E-8")  # Binance's per-trade rounding of quote quantities
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (kline field, fact column); prices first, then the counts and volumes.
PRICES = (("open", "open_price"), ("high", "max_price"), ("low", "min_price"),
          ("close", "close_price"))
AMOUNTS = (("volume", "total_quantity"), ("taker_buy_volume", "taker_buy_quantity"))
FACT_COLUMNS = ("symbol", "trade_minute", *(column for _, column in PRICES),
                *(column for _, column in AMOUNTS), "trade_count", "total_trade_value")
# the order of the report: a count mismatch first, since it explains the others of its minute
COLUMN_NAMES = ("trades", "open", "high", "low", "close", "volume", "taker_buy_volume",
                "quote_volume")


@dataclass
class Mismatch:
    symbol: str
    minute_ms: int
    column: str
    ours: object
    theirs: object

    def as_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "minute": minute_iso(self.minute_ms), "column": self.column,
                "ours": None if self.ours is None else str(self.ours),
                "theirs": None if self.theirs is None else str(self.theirs)}


@dataclass
class SymbolResult:
    minutes_compared: int = 0
    minutes_mismatched: int = 0
    our_trades: int = 0
    their_trades: int = 0
    lost_trades: int = 0  # Σ over minutes of (Binance's count − ours) where positive
    extra_trades: int = 0  # Σ over minutes of (ours − Binance's) where positive
    source: str = ""


@dataclass
class Comparison:
    symbols: dict[str, SymbolResult] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def by_column(self) -> dict[str, list[Mismatch]]:
        grouped: dict[str, list[Mismatch]] = defaultdict(list)
        for mismatch in self.mismatches:
            grouped[mismatch.column].append(mismatch)
        return {name: grouped[name] for name in COLUMN_NAMES if name in grouped}


def minute_iso(minute_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=minute_ms)).strftime("%Y-%m-%dT%H:%MZ")


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def fact_rows(facts: pa.Table) -> dict[str, dict[int, dict[str, Any]]]:
    """The facts' compared columns as {symbol: {minute ms: row}} (a few thousand rows).

    Decimals go through Arrow's exact decimal-to-text cast and `Decimal(text)`: three times
    faster than `to_pylist()`'s per-value conversion."""
    minutes = pc.cast(pc.cast(facts["trade_minute"], pa.timestamp("ms", "UTC")), pa.int64())
    columns: dict[str, list[Any]] = {
        name: list(map(Decimal, pc.cast(facts[name], pa.string()).to_pylist()))
        for name in FACT_COLUMNS[2:] if name != "trade_count"
    }
    columns["trade_count"] = facts["trade_count"].to_pylist()
    names = list(columns)
    rows: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for symbol, minute, *values in zip(facts["symbol"].to_pylist(), minutes.to_pylist(),
                                       *columns.values(), strict=True):
        rows[symbol][minute] = dict(zip(names, values, strict=True))
    return rows


def rows_by_symbol(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Fact-shaped rows (warehouse or `bars_1m`) as {symbol: {minute ms: row}}."""
    grouped: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        grouped[str(row["symbol"])][to_ms(row["trade_minute"])] = dict(row)
    return grouped


def _compare_minute(symbol: str, minute: int, ours: Mapping[str, Any] | None,
                    theirs: Kline | None) -> list[Mismatch]:
    our_count = int(ours["trade_count"]) if ours else 0
    their_count = theirs.trades if theirs else 0
    found: list[Mismatch] = []
    if our_count != their_count:
        found.append(Mismatch(symbol, minute, "trades", our_count, their_count))
    if our_count and their_count:
        assert ours is not None
        assert theirs is not None
        for name, column in PRICES:
            if Decimal(ours[column]) != getattr(theirs, name):
                found.append(Mismatch(symbol, minute, name, ours[column], getattr(theirs, name)))
    for name, column in AMOUNTS:
        mine = Decimal(ours[column]) if ours else Decimal(0)
        other = getattr(theirs, name) if theirs else Decimal(0)
        if mine != other:
            found.append(Mismatch(symbol, minute, name, mine, other))
    value = Decimal(ours["total_trade_value"]) if ours else Decimal(0)
    quote = theirs.quote_volume if theirs else Decimal(0)
    if abs(value - quote) > max(our_count, their_count) * QUOTE_STEP:
        found.append(Mismatch(symbol, minute, "quote_volume", value, quote))
    return found


def compare(
    ours: Mapping[str, Mapping[int, Mapping[str, Any]]],
    klines: Mapping[str, list[Kline]],
    window: tuple[int, int] | None = None,
) -> Comparison:
    """Every symbol of `klines`, minute by minute over the union of both sides' minutes (only
    minutes in `window` = [start ms, end ms) when given)."""
    comparison = Comparison()
    for symbol in sorted(klines):
        mine = ours.get(symbol, {})
        theirs = {kline.open_ms: kline for kline in klines[symbol]}
        minutes = sorted(set(mine) | set(theirs))
        if window is not None:
            minutes = [minute for minute in minutes if window[0] <= minute < window[1]]
        result = comparison.symbols[symbol] = SymbolResult()
        for minute in minutes:
            our_row, kline = mine.get(minute), theirs.get(minute)
            our_count = int(our_row["trade_count"]) if our_row else 0
            their_count = kline.trades if kline else 0
            result.minutes_compared += 1
            result.our_trades += our_count
            result.their_trades += their_count
            result.lost_trades += max(their_count - our_count, 0)
            result.extra_trades += max(our_count - their_count, 0)
            found = _compare_minute(symbol, minute, our_row, kline)
            if found:
                result.minutes_mismatched += 1
                comparison.mismatches.extend(found)
    return comparison


def check_day(facts: pa.Table, day_klines: DayKlines | None, policy: str) -> dict[str, Any]:
    """The gate's check entry (`name`, `passed`, `status`, `detail`) and its report section
    (`report`) for the day's facts against the klines that could be had."""
    if policy == "off" or day_klines is None:
        return _entry(True, "off", "not checked (EXCHANGE_CHECK=off)", {"policy": policy})
    start, end = day_ms(day_klines.day)
    available = {symbol: got.klines for symbol, got in day_klines.symbols.items()}
    ours = fact_rows(facts)
    # a symbol with facts but no klines cannot be compared: it is skipped, with the reason
    skipped = dict(day_klines.unavailable)
    for symbol in ours:
        if symbol not in available and symbol not in skipped:
            skipped[symbol] = "no klines asked for (not in SYMBOLS)"
    comparison = compare(ours, available, (start, end))
    for symbol, got in day_klines.symbols.items():
        comparison.symbols[symbol].source = got.source
    section = report_section(comparison, policy, skipped)
    if not comparison.symbols:
        return _entry(True, "skipped", "skipped: " + _reasons(skipped), section)
    summary = summarise(comparison)
    suffix = f"; skipped {_reasons(skipped)}" if skipped else ""
    if comparison.passed:
        return _entry(True, "passed", summary + suffix, section)
    if policy == "warn":
        return _entry(True, "warned", f"{summary} (EXCHANGE_CHECK=warn: published anyway)"
                      + suffix, section)
    return _entry(False, "failed", summary + suffix, section)


def _reasons(skipped: Mapping[str, str]) -> str:
    return "; ".join(f"{symbol}: {reason}" for symbol, reason in sorted(skipped.items()))


def _entry(passed: bool, status: str, detail: str, section: dict[str, Any]) -> dict[str, Any]:
    return {"name": CHECK_NAME, "passed": passed, "status": status, "detail": detail,
            "report": {"status": status, **section}}


def summarise(comparison: Comparison) -> str:
    """One line: what agreed, or the first mismatch of each column and the totals."""
    compared = sum(result.minutes_compared for result in comparison.symbols.values())
    if comparison.passed:
        return (f"{compared} minute(s) of {len(comparison.symbols)} symbol(s) equal Binance's "
                "klines")
    bad = sum(result.minutes_mismatched for result in comparison.symbols.values())
    lost = sum(result.lost_trades for result in comparison.symbols.values())
    extra = sum(result.extra_trades for result in comparison.symbols.values())
    firsts = ", ".join(
        f"{name} at {items[0].symbol} {minute_iso(items[0].minute_ms)} "
        f"(ours {items[0].ours}, Binance {items[0].theirs})"
        for name, items in comparison.by_column().items()
    )
    return (f"{bad} of {compared} minute(s) differ from Binance's klines "
            f"({lost} lost trade(s), {extra} extra trade(s)): {firsts}")


def report_section(comparison: Comparison, policy: str,
                   skipped: Mapping[str, str]) -> dict[str, Any]:
    """The JSON report's `exchange` section: per-symbol totals, first mismatches per column."""
    return {
        "policy": policy,
        "quote_volume_rule": "|total_trade_value - quote volume| <= trades x 1e-8",
        "symbols": {
            symbol: {
                "source": result.source,
                "minutes_compared": result.minutes_compared,
                "minutes_mismatched": result.minutes_mismatched,
                "our_trades": result.our_trades,
                "binance_trades": result.their_trades,
                "lost_trades": result.lost_trades,
                "extra_trades": result.extra_trades,
            }
            for symbol, result in comparison.symbols.items()
        },
        "skipped": dict(sorted(skipped.items())),
        "mismatches": {
            name: {"total": len(items),
                   "first": [item.as_json() for item in items[:SHOWN_PER_COLUMN]]}
            for name, items in comparison.by_column().items()
        },
    }


def add_to_report(report: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Adds the check to the gate's report (its own entry and `exchange` section) and updates
    the verdict."""
    section = entry.pop("report")
    report["checks"].append(entry)
    report["exchange"] = section
    report["passed"] = all(item["passed"] for item in report["checks"])
    return report

