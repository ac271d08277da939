"""`GET /api/bars` against real PostgreSQL with a day loaded by the real batch (Spark, lake,
warehouse): the warehouse's rows exactly, live bars where no day is loaded, 400 on bad input.
The expected values come from PostgreSQL's own text form of the stored numerics."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from binance_etl.db import connect
from tests.plugins.dashboard import DashboardData, day_start

pytestmark = pytest.mark.integration

FACTS_AS_STORED_SQL = """
SELECT to_char(trade_minute AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       open_price::text, max_price::text, min_price::text, close_price::text,
       total_quantity::text, total_trade_value::text, vwap::text, trade_count
FROM {table} WHERE symbol = %s AND trade_minute >= %s AND trade_minute < %s
ORDER BY trade_minute
"""
FIELDS = ("minute", "open", "high", "low", "close", "volume", "value", "vwap", "trades")


def as_rows(bars: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(bar[field] for field in FIELDS) for bar in bars]


def get_bars(base: str, symbol: str, start: str, end: str) -> httpx.Response:
    return httpx.get(f"{base}/api/bars", params={"symbol": symbol, "start": start, "end": end},
                     timeout=30)


def test_bars_of_a_loaded_day_equal_the_warehouse_rows(
    dashboard_url: str, dashboard_data: DashboardData
) -> None:
    day = dashboard_data.day
    start, end = day_start(day), day_start(day) + timedelta(days=1)
    with connect(dashboard_data.url) as conn:
        expected = conn.execute(FACTS_AS_STORED_SQL.format(table="warehouse.fact_trades"),
                                ("BTCUSDT", start, end)).fetchall()
        # a stale live bar inside the loaded day must not show: the warehouse wins
        conn.execute(
            "INSERT INTO bars_1m (symbol, trade_minute, min_price, max_price, avg_price,"
            " total_quantity, total_trade_value, trade_count, open_price, close_price, vwap,"
            " taker_buy_quantity, complete) VALUES ('BTCUSDT', %s, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,"
            " true) ON CONFLICT DO NOTHING", (start + timedelta(minutes=3),))
        conn.commit()
    assert len(expected) == 1440  # every minute of the generated day has trades

    response = get_bars(dashboard_url, "btcusdt", f"{day}T00:00:00Z",
                        f"{day + timedelta(days=1)}T00:00:00+00:00")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["symbol"] == "BTCUSDT"
    assert as_rows(body["bars"]) == [tuple(row) for row in expected]
    assert {(bar["source"], bar["complete"]) for bar in body["bars"]} == {("warehouse", True)}
    # decimal strings, exactly as stored: 8 decimal places for prices, no float rounding
    first = body["bars"][0]
    assert first["open"].count(".") == 1
    assert len(first["open"].split(".")[1]) == 8
    assert Decimal(first["value"]) == Decimal(expected[0][6])

    # The facts' JSON is cached per range until the day changes: a reload shows at once.
    noon = start + timedelta(hours=12)
    with connect(dashboard_data.url) as conn:
        conn.execute("UPDATE warehouse.fact_trades SET close_price = close_price + 0.00000001 "
                     "WHERE symbol = 'BTCUSDT' AND trade_minute = %s", (noon,))
        conn.commit()
        changed = get_bars(dashboard_url, "BTCUSDT", start.isoformat(), end.isoformat())
        conn.execute("UPDATE warehouse.fact_trades SET close_price = close_price - 0.00000001 "
                     "WHERE symbol = 'BTCUSDT' AND trade_minute = %s", (noon,))
        conn.commit()
    assert Decimal(changed.json()["bars"][720]["close"]) == Decimal(expected[720][4]) + \
        Decimal("0.00000001")
    restored = get_bars(dashboard_url, "BTCUSDT", start.isoformat(), end.isoformat())
    assert restored.json() == body


def test_live_bars_where_no_day_is_loaded_and_ranges_across_sources(
    dashboard_url: str, dashboard_data: DashboardData
) -> None:
    today = dashboard_data.today_start
    with connect(dashboard_data.url) as conn:
        expected = conn.execute(
            FACTS_AS_STORED_SQL.format(table="bars_1m"),
            ("ETHUSDT", today, today + timedelta(days=1)),
        ).fetchall()
        completes = [row[0] for row in conn.execute(
            "SELECT complete FROM bars_1m WHERE symbol = 'ETHUSDT' AND trade_minute >= %s "
            "ORDER BY trade_minute", (today,))]
    start = today.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (today + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    body = get_bars(dashboard_url, "ETHUSDT", start, end).json()

    assert len(expected) >= 1
    assert as_rows(body["bars"]) == [tuple(row) for row in expected]
    assert [bar["source"] for bar in body["bars"]] == ["live"] * len(expected)
    assert [bar["complete"] for bar in body["bars"]] == completes
    assert completes[-1] is False  # the forming minute is provisional

    # A range over the loaded day's last hour and the next (unloaded) day's first: both sources.
    day = dashboard_data.day
    edge = day_start(day) + timedelta(days=1)
    with connect(dashboard_data.url) as conn:
        conn.execute(
            "INSERT INTO bars_1m (symbol, trade_minute, min_price, max_price, avg_price,"
            " total_quantity, total_trade_value, trade_count, open_price, close_price, vwap,"
            " taker_buy_quantity, complete) VALUES ('ETHUSDT', %s, 4300.10000000, 4301.5,"
            " 4300.8, 0.5, 2150.4, 2, 4300.1, 4301.5, 4300.8, 0.25, true)"
            " ON CONFLICT DO NOTHING", (edge + timedelta(minutes=5),))
        conn.commit()
    mixed = get_bars(dashboard_url, "ETHUSDT", (edge - timedelta(hours=1)).isoformat(),
                     (edge + timedelta(hours=1)).isoformat()).json()["bars"]
    assert [bar["source"] for bar in mixed] == ["warehouse"] * 60 + ["live"]
    assert mixed[-1]["minute"] == f"{day + timedelta(days=1)}T00:05:00Z"
    assert mixed[-1]["low"] == "4300.10000000"
    assert [bar["minute"] for bar in mixed] == sorted(bar["minute"] for bar in mixed)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"start": "2025-08-20T00:00:00Z", "end": "2025-08-21T00:00:00Z"}, "symbol is required"),
        ({"symbol": "BTC USDT", "start": "2025-08-20", "end": "2025-08-21"}, "malformed symbol"),
        ({"symbol": "BTC;DROP", "start": "2025-08-20", "end": "2025-08-21"}, "malformed symbol"),
        ({"symbol": "DOGEUSDT", "start": "2025-08-20", "end": "2025-08-21"}, "unknown symbol"),
        ({"symbol": "BTCUSDT", "start": "yesterday", "end": "2025-08-21"}, "not an ISO 8601"),
        ({"symbol": "BTCUSDT", "start": "2025-08-20T00:00:00Z", "end": "2025-13-01"},
         "not an ISO 8601"),
        ({"symbol": "BTCUSDT", "start": "2025-08-20T00:00:00Z"}, "end is required"),
        ({"symbol": "BTCUSDT", "start": "2025-08-21", "end": "2025-08-20"}, "is not after start"),
        ({"symbol": "BTCUSDT", "start": "2025-08-20", "end": "2025-08-20"}, "is not after start"),
        ({"symbol": "BTCUSDT", "start": "2025-08-01", "end": "2025-08-09T00:00:01Z"},
         "longer than the maximum of 7 day(s)"),
    ],
)
def test_bad_input_gets_400_with_a_one_line_reason(
    dashboard_url: str, params: dict[str, str], reason: str
) -> None:
    response = httpx.get(f"{dashboard_url}/api/bars", params=params, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert reason in error
    assert "\n" not in error
