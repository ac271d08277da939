"""Pytest fixtures for the dashboard area (registered in tests/conftest.py).

`dashboard_data`: a database of its own (the session database's warehouse is rewritten by the
batch tests) with a generated past day loaded by the real batch (Spark, lake, warehouse) and
today's trades with their `bars_1m` rows computed by PostgreSQL, as `python -m live` keeps them.
`dashboard_url`: the dashboard served by waitress in a thread over that database.
`chromium`: a headless Chromium (Debian's package) driven by Playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from binance_etl.db import connect, with_database
from binance_etl.schema import ensure_partitions, migrate
from binance_etl.settings import Settings, load_settings

DAY = date(2025, 8, 20)
SYMBOLS = {
    # symbol: (first trade id on DAY, trades on DAY, base price, amplitude, tick, lot)
    "BTCUSDT": (4_100_000_000, 4000, "112345.12", "600", "0.01", "0.00001234"),
    "ETHUSDT": (2_200_000_000, 1500, "4321.07", "60", "0.01", "0.0003"),
}
QUIET_SYMBOL = "XRPUSDT"
TODAY_ID_OFFSET = 50_000_000  # today's trade ids follow the past day's

# Trades on a wave with noise, prices on the tick, spread evenly over [start, start + span).
INSERT_TRADES_SQL = """
INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time, is_buyer_maker)
SELECT %(symbol)s, %(first)s + g,
       round((%(base)s::numeric
              + %(amp)s::numeric * (sin(g / 500.0) + 0.3 * sin(g / 41.0))::numeric
              + ((g * 7919) %% 500 - 250) * %(amp)s::numeric / 5000)
             / %(tick)s::numeric) * %(tick)s::numeric,
       ((g * 104729) %% 99991 + 1) * %(lot)s::numeric,
       %(start)s + (g * (%(span_ms)s / %(n)s)) * interval '1 millisecond',
       %(start)s + (g * (%(span_ms)s / %(n)s) + 2) * interval '1 millisecond',
       (g * 31) %% 7 < 3
FROM generate_series(0, %(n)s - 1) AS g
"""

# What `python -m live` keeps in bars_1m, computed by PostgreSQL from the raw trades (the same
# arithmetic as the batch's fact_trades); a minute is complete once it has ended.
UPSERT_BARS_SQL = """
INSERT INTO bars_1m (symbol, trade_minute, min_price, max_price, avg_price, total_quantity,
                     total_trade_value, trade_count, open_price, close_price, vwap,
                     taker_buy_quantity, complete, updated_at)
SELECT symbol, date_trunc('minute', trade_time), min(price), max(price),
       round(sum(price)::numeric(60, 24) / count(*), 12), sum(quantity), sum(price * quantity),
       count(*),
       (array_agg(price ORDER BY trade_time, trade_id))[1],
       (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1],
       round(sum(price * quantity)::numeric(60, 24) / sum(quantity), 12),
       coalesce(sum(quantity) FILTER (WHERE NOT is_buyer_maker), 0),
       date_trunc('minute', trade_time) + interval '1 minute' <= now(), now()
FROM trades
WHERE trade_time >= %(start)s AND trade_time < %(end)s
GROUP BY 1, 2
ON CONFLICT (symbol, trade_minute) DO UPDATE SET
    min_price = EXCLUDED.min_price, max_price = EXCLUDED.max_price,
    avg_price = EXCLUDED.avg_price, total_quantity = EXCLUDED.total_quantity,
    total_trade_value = EXCLUDED.total_trade_value, trade_count = EXCLUDED.trade_count,
    open_price = EXCLUDED.open_price, close_price = EXCLUDED.close_price,
    vwap = EXCLUDED.vwap, taker_buy_quantity = EXCLUDED.taker_buy_quantity,
    complete = EXCLUDED.complete, updated_at = EXCLUDED.updated_at
"""


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def insert_trades(conn: psycopg.Connection, symbol: str, first_id: int, n: int,
                  start: datetime, span: timedelta) -> None:
    _, _, base, amp, tick, lot = SYMBOLS[symbol]
    conn.execute(INSERT_TRADES_SQL, {
        "symbol": symbol, "first": first_id, "n": n, "base": base, "amp": amp, "tick": tick,
        "lot": lot, "start": start, "span_ms": int(span.total_seconds() * 1000)})


def upsert_bars(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    conn.execute(UPSERT_BARS_SQL, {"start": start, "end": end})


@dataclass(frozen=True)
class DashboardData:
    url: str  # the database (raw store and warehouse)
    settings: Settings
    day: date  # loaded by the batch
    lake: Path
    today_start: datetime  # today's trades and live bars begin here


@pytest.fixture(scope="session")
def dashboard_data(
    spark: object, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardData]:
    from etl.main import run_day

    name = f"dash_{uuid.uuid4().hex[:10]}"
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    lake = tmp_path_factory.mktemp("dashboard") / "lake"
    # XRPUSDT is configured but never traded: the Health view must call it stale. The others'
    # last trades are minutes old by the time a test looks, so "stale" here means an hour.
    settings = load_settings(database_url=url, warehouse_url=url, lake_uri=str(lake),
                             symbols=[*SYMBOLS, QUIET_SYMBOL], spark_master="local[2]",
                             jdbc_partitions=2, dashboard_stale_seconds=3600)
    now = datetime.now(UTC)
    today_start = max(now.replace(second=0, microsecond=0) - timedelta(minutes=20),
                      day_start(now.date()))
    try:
        with connect(url, autocommit=True) as conn:
            migrate(conn)
            ensure_partitions(conn, [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)])
            for symbol, (first_id, n, *_) in SYMBOLS.items():
                insert_trades(conn, symbol, first_id, n, day_start(DAY), timedelta(days=1))
                # today: one trade every 5 s up to a few seconds ago
                count = max(1, int((now - today_start).total_seconds() // 5) - 1)
                insert_trades(conn, symbol, first_id + TODAY_ID_OFFSET, count, today_start,
                              timedelta(seconds=5 * count))
            upsert_bars(conn, today_start, today_start + timedelta(days=1))
            # each symbol's latest minute is still forming, whatever the clock says by now
            conn.execute("UPDATE bars_1m SET complete = false WHERE (symbol, trade_minute) IN "
                         "(SELECT symbol, max(trade_minute) FROM bars_1m GROUP BY symbol)")
        run_day(DAY, settings)
        yield DashboardData(url, settings, DAY, lake, today_start)
    finally:
        with connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def dashboard_url(dashboard_data: DashboardData) -> Iterator[str]:
    """The dashboard (the app `python -m dashboard` serves) in a thread, on a free port."""
    import waitress

    from dashboard.app import create_app, open_sources

    sources = open_sources(dashboard_data.settings)
    app = create_app(dashboard_data.settings, sources)
    server: Any = waitress.create_server(app.server, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        sources.close()


def chromium_path() -> str:
    """Debian's Chromium; missing, the browser tests fail under CI (.ci/run sets
    BINANCE_ETL_REQUIRE_BROWSER) and are skipped elsewhere, with the reason in the summary."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        message = ("Chromium is not installed (Debian: apt-get install chromium; .ci/run "
                   "installs it)")
        if os.environ.get("BINANCE_ETL_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is open, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        yield browser
        browser.close()
