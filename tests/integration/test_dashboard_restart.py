"""`python -m dashboard` as users run it, on a PostgreSQL server of this test alone: the database
stops (the API answers 503 with a message, the page says so, the server keeps running) and
comes back (the same requests succeed again, without restarting the dashboard)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from binance_etl.db import connect
from binance_etl.localpg import free_port
from tests.plugins.ingest import DedicatedPostgres

pytestmark = pytest.mark.integration

# What the page's Health refresh asks the server (Dash's callback protocol).
HEALTH_CALLBACK = {
    "output": "..health.children...db-status.children..",
    "outputs": [{"id": "health", "property": "children"},
                {"id": "db-status", "property": "children"}],
    "inputs": [{"id": "health-tick", "property": "n_intervals", "value": 1}],
    "changedPropIds": ["health-tick.n_intervals"],
}


@pytest.fixture
def dashboard_process(dedicated_pg: DedicatedPostgres, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dedicated_pg.url, "LAKE_URI": str(tmp_path / "lake"),
           "SYMBOLS": "BTCUSDT"}
    env.pop("WAREHOUSE_URL", None)
    log = (tmp_path / "dashboard.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, (tmp_path / "dashboard.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def bars(base: str, start: datetime) -> httpx.Response:
    return httpx.get(f"{base}/api/bars", timeout=30, params={
        "symbol": "BTCUSDT", "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat()})


def test_database_down_gives_503_then_recovers(
    dedicated_pg: DedicatedPostgres, dashboard_process: str
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with connect(dedicated_pg.url) as conn:
        for minute in range(3):
            conn.execute(
                "INSERT INTO bars_1m (symbol, trade_minute, min_price, max_price, avg_price,"
                " total_quantity, total_trade_value, trade_count, open_price, close_price, vwap,"
                " taker_buy_quantity, complete) VALUES ('BTCUSDT', %s, 100.5, 101.25, 100.9,"
                " 2.00000001, 201.8000001, 4, 100.5, 101.25, 100.9, 1, %s)",
                (start + timedelta(minutes=minute), minute < 2))
        conn.commit()
    before = bars(dashboard_process, start)
    assert before.status_code == 200, before.text
    assert len(before.json()["bars"]) == 3

    dedicated_pg.server.stop("fast")
    down = bars(dashboard_process, start)
    assert down.status_code == 503
    assert "unavailable" in down.json()["error"]
    assert "\n" not in down.json()["error"]
    page = httpx.get(dashboard_process, timeout=30)
    assert page.status_code == 200  # the server itself keeps running
    health = httpx.post(f"{dashboard_process}/_dash-update-component", json=HEALTH_CALLBACK,
                        timeout=30)
    assert health.status_code == 200
    assert "Database unavailable" in health.text

    dedicated_pg.server.restart()  # same port
    deadline = time.monotonic() + 60
    after = bars(dashboard_process, start)
    while after.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        after = bars(dashboard_process, start)
    assert after.status_code == 200, after.text
    assert after.json() == before.json()
    health = httpx.post(f"{dashboard_process}/_dash-update-component", json=HEALTH_CALLBACK,
                        timeout=30)
    assert "Database unavailable" not in health.text
