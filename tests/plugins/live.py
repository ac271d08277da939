"""Helpers of the live-bars tests (registered in tests/conftest.py).

- `raw_bars(url, symbols, since)`: bars computed independently of Spark from the raw table
  (PostgreSQL's exact numeric sums, Python's Decimal for the rounded means) with the expected
  `complete` (the minute lies between the symbol's first and last stored trade, all ids stored).
- `live_bars(url)`: what bars_1m holds (contract columns + complete).
- `wait_for(predicate, what)`: poll a condition (never a timing assertion).
- `live_caught_up(url, symbols, since)`: every stored trade of the scope is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from binance_etl.db import connect

Key = tuple[str, datetime]
COLUMNS = ("min_price", "max_price", "avg_price", "total_quantity", "total_trade_value",
           "trade_count", "open_price", "close_price", "vwap", "taker_buy_quantity", "complete")
TWELVE = Decimal("0.000000000001")

RAW_SQL = """
SELECT symbol, date_trunc('minute', trade_time) AS minute,
       min(price), max(price), sum(price), count(*), sum(quantity), sum(price * quantity),
       (array_agg(price ORDER BY trade_time, trade_id))[1],
       (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1],
       coalesce(sum(quantity) FILTER (WHERE NOT is_buyer_maker), 0),
       count(DISTINCT trade_id)
FROM trades WHERE symbol = ANY(%s) AND trade_time >= %s
GROUP BY 1, 2 ORDER BY 1, 2
"""
SPAN_SQL = """
SELECT symbol, min(trade_time), max(trade_time), min(trade_id), max(trade_id), count(*)
FROM trades WHERE symbol = ANY(%s) AND trade_time >= %s GROUP BY symbol
"""


def _mean(total: Decimal, count: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 100
        return (total / count).quantize(TWELVE, rounding=ROUND_HALF_UP)


def raw_bars(url: str, symbols: list[str], since: datetime) -> dict[Key, dict[str, Any]]:
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(RAW_SQL, (symbols, since)).fetchall()
        spans = {r[0]: r[1:] for r in conn.execute(SPAN_SQL, (symbols, since)).fetchall()}
    out: dict[Key, dict[str, Any]] = {}
    for (symbol, minute, low, high, sum_p, count, sum_q, value, first, last, taker,
         distinct) in rows:
        assert distinct == count, f"{symbol} {minute}: a trade id stored twice"
        first_time, last_time, lo_id, hi_id, stored = spans[symbol]
        assert hi_id - lo_id + 1 == stored, f"{symbol}: the raw table still has a gap"
        out[(symbol, minute)] = {
            "min_price": low, "max_price": high, "avg_price": _mean(sum_p, Decimal(count)),
            "total_quantity": sum_q, "total_trade_value": value, "trade_count": count,
            "open_price": first, "close_price": last,
            "vwap": _mean(value, sum_q) if sum_q else None, "taker_buy_quantity": taker,
            # the symbol's first stored trade is not anchored (the id below it is not stored)
            "complete": first_time < minute and last_time >= minute + timedelta(minutes=1),
        }
    return out


def live_bars(url: str) -> dict[Key, dict[str, Any]]:
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT symbol, trade_minute, {', '.join(COLUMNS)} FROM bars_1m ORDER BY 1, 2"
        ).fetchall()
    return {(r[0], r[1]): dict(zip(COLUMNS, r[2:], strict=True)) for r in rows}


def counted(url: str, symbols: list[str], since: datetime) -> tuple[int, int]:
    """(trades stored in scope, trades counted in bars) for these symbols."""
    with connect(url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM trades WHERE symbol = ANY(%s) "
                              "AND trade_time >= %s", (symbols, since)).fetchone()
        bars = conn.execute("SELECT coalesce(sum(trade_count), 0) FROM bars_1m "
                            "WHERE symbol = ANY(%s)", (symbols,)).fetchone()
    assert stored is not None
    assert bars is not None
    return int(stored[0]), int(bars[0])


def live_caught_up(url: str, symbols: list[str], since: datetime) -> bool:
    stored, in_bars = counted(url, symbols, since)
    assert in_bars <= stored, f"bars count {in_bars} trades, only {stored} are stored"
    return stored == in_bars and stored > 0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def assert_bars_equal_raw(url: str, symbols: list[str], since: datetime) -> int:
    """bars_1m equals the independent aggregation for every minute, complete included."""
    expected = raw_bars(url, symbols, since)
    actual = {k: v for k, v in live_bars(url).items() if k[0] in symbols}
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        assert actual[key] == row, f"{key}: bar {actual[key]} != raw {row}"
    return len(expected)
