"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright): no console
error and no request leaving the server, the batch-loaded day drawn with exact hover values, a
trade committed while the page is open redrawing the live candle, the Days and Health views.

The screenshot docs/img/dashboard.png comes from here: written when it is missing or when
UPDATE_SCREENSHOTS=1 (otherwise into the test's temporary folder, so a run leaves git clean).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from binance_etl.db import connect
from dashboard.plotlyjs import bundle_version
from tests.plugins.dashboard import (
    QUIET_SYMBOL,
    DashboardData,
    day_start,
    upsert_bars,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"
WAIT_MS = 30_000  # generous: the machine may be loaded; nothing here asserts a duration

# The candlestick traces' points and drawn boxes, read from Plotly's own state in the page.
CANDLES_JS = """() => {
    const graph = document.querySelector('#candles .js-plotly-plot');
    if (!graph || !graph.data) return null;
    const candles = graph.data.filter(t => t.type === 'candlestick');
    return {
        names: candles.map(t => t.name),
        points: candles.map(t => (t.x || []).length),
        close: candles.map(t => Array.from(t.close || [])),
        hover: candles.map(t => Array.from(t.hovertext || [])),
        boxes: graph.querySelectorAll('path.box').length,
        title: (graph.layout.title && graph.layout.title.text)
            || (graph.layout.annotations || []).map(a => a.text).join(' '),
    };
}"""


class Page:
    """A page with its console errors and any request that left the dashboard's server."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.requested: list[str] = []
        self.page.on("request", lambda r: self.requested.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:"))
                     else self.outside.append(r.url))

    def candles(self) -> dict[str, Any]:
        return dict(self.page.evaluate(CANDLES_JS) or {})

    def wait_for_candles(self, points: int) -> dict[str, Any]:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                f"() => {{ const c = ({CANDLES_JS})(); return c && c.boxes > 0 && "
                f"c.points.reduce((a, b) => a + b, 0) === {points}; }}", timeout=WAIT_MS)
        except PlaywrightTimeout:
            state = {k: v for k, v in self.candles().items() if k not in ("close", "hover")}
            raise AssertionError(f"no {points} candles drawn; the chart holds {state}; "
                                 f"errors {self.errors}") from None
        return self.candles()


@pytest.fixture
def page(chromium: Any, dashboard_url: str) -> Iterator[Page]:
    opened = Page(chromium, dashboard_url)
    yield opened
    opened.context.close()
    assert opened.errors == [], "console errors in the page"
    assert opened.outside == [], "the page fetched something from outside its server"


def test_loaded_day_is_drawn_with_exact_values_on_hover(
    page: Page, dashboard_url: str, dashboard_data: DashboardData, tmp_path: Path
) -> None:
    day = dashboard_data.day
    with connect(dashboard_data.url) as conn:
        first = conn.execute(
            "SELECT open_price::text, max_price::text, vwap::text, trade_count FROM "
            "warehouse.fact_trades WHERE symbol = 'BTCUSDT' AND trade_minute = %s",
            (day_start(day),)).fetchone()
    assert first is not None

    page.page.goto(f"{dashboard_url}/?symbol=BTCUSDT&day={day}")
    candles = page.wait_for_candles(1440)

    assert candles["names"] == ["final bars", "provisional bars"]
    assert candles["points"] == [1440, 0]  # a loaded day is final
    # drawn by the vendored finance bundle: the full plotly.min.js (4.8 MB) was never fetched
    assert page.page.evaluate("window.Plotly.version") == bundle_version()
    assert [url for url in page.requested if "plotly-finance.min.js" in url]
    assert not [url for url in page.requested if "plotly.min.js" in url]
    assert "warehouse" in candles["title"]
    hover = candles["hover"][0][0]
    assert f"open {first[0]}" in hover
    assert f"high {first[1]}" in hover
    assert f"vwap {first[2]}" in hover
    assert f"trades {first[3]}" in hover
    # A real hover over the chart shows such a label with the stored decimals.
    box = page.page.locator("#candles .nsewdrag").first.bounding_box()
    assert box is not None
    page.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    labels = page.page.locator("#candles .hoverlayer .hovertext")
    labels.first.wait_for(timeout=WAIT_MS)
    shown = " ".join(labels.all_text_contents())
    assert "open " in shown
    assert "vwap " in shown

    target = SCREENSHOT if (os.environ.get("UPDATE_SCREENSHOTS") == "1"
                            or not SCREENSHOT.exists()) else tmp_path / "dashboard.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(target))
    assert target.stat().st_size > 20_000


def test_a_committed_trade_changes_the_live_candle(
    page: Page, dashboard_url: str, dashboard_data: DashboardData
) -> None:
    with connect(dashboard_data.url) as conn:
        live = conn.execute("SELECT count(*) FROM bars_1m WHERE symbol = 'BTCUSDT' "
                            "AND trade_minute >= %s", (dashboard_data.today_start,)).fetchone()
    assert live is not None

    page.page.goto(f"{dashboard_url}/?symbol=BTCUSDT")
    before = page.wait_for_candles(live[0])
    assert before["points"][1] >= 1  # the forming minute is drawn as provisional
    assert "provisional" in before["hover"][1][-1]

    # A trade at a price the day never saw, one millisecond after the last one (same minute,
    # unless the last one closed its minute), committed and folded into bars_1m as `live` does.
    with connect(dashboard_data.url) as conn:
        last = conn.execute("SELECT max(trade_id), max(trade_time) FROM trades "
                            "WHERE symbol = 'BTCUSDT'").fetchone()
        assert last is not None
        moment = last[1] + timedelta(milliseconds=1)
        conn.execute(
            "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker)"
            " VALUES ('BTCUSDT', %s, 123456.78000001, 0.5, %s, false)", (last[0] + 1, moment))
        minute = moment.replace(second=0, microsecond=0)
        upsert_bars(conn, minute, minute + timedelta(minutes=1))
        conn.execute("UPDATE bars_1m SET complete = false WHERE symbol = 'BTCUSDT' AND "
                     "trade_minute = %s", (minute,))
        conn.commit()

    page.page.wait_for_function(
        f"() => {{ const c = ({CANDLES_JS})(); return c && c.close[1].length && "
        "c.close[1][c.close[1].length - 1] === 123456.78000001; }", timeout=WAIT_MS)
    after = page.candles()
    assert "close 123456.78000001" in after["hover"][1][-1]
    assert "high 123456.78000001" in after["hover"][1][-1]


def test_days_and_health_views(
    page: Page, dashboard_url: str, dashboard_data: DashboardData
) -> None:
    day = dashboard_data.day
    report = json.loads((dashboard_data.lake / "quality_reports" / f"year={day:%Y}"
                         / f"month={day:%m}" / f"day={day:%d}" / "quality.json").read_text())
    page.page.goto(dashboard_url)
    page.page.get_by_text("Days", exact=True).click()
    row = page.page.locator(f"#day-{day}")
    row.wait_for(timeout=WAIT_MS)
    text = row.inner_text()
    assert "ids continuous" in text
    assert "ran (published)" in text
    assert "passed" in text
    for check in report["checks"]:  # every check of the report, with its detail
        assert f"{check['name']}: {check['detail']}" in text
    assert text.count("2,880") == 2  # fact rows in the lake and in the warehouse

    page.page.get_by_text("Health", exact=True).click()
    quiet = page.page.locator(f"#health-{QUIET_SYMBOL}")
    quiet.wait_for(timeout=WAIT_MS)
    assert "STALE" in quiet.inner_text()
    assert "never" in quiet.inner_text()
    btc = page.page.locator("#health-BTCUSDT").inner_text()
    assert "ok" in btc
    assert str(datetime.now(UTC).date()) in btc
