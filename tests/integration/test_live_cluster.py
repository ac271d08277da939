"""`python -m live` on a real standalone master + worker (the session's cluster, which the batch's
cluster test also uses): the source's reads and the sink's aggregation run in an executor the
worker launches, bars_1m equals the independent aggregation of the raw table, and the driver's
JVM runs with the live query's memory bounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from binance_etl.db import connect, with_database
from binance_etl.schema import migrate
from live.main import DRIVER_MEMORY, LIVE_JAVA_OPTIONS
from live.offsets import default_since
from tests.plugins.live import assert_bars_equal_raw, live_caught_up, wait_for
from tests.plugins.spark import StandaloneCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TRADES = 2_400  # per symbol, 50 ms apart: 10:00:00.000 to 10:01:59.950 yesterday


@pytest.fixture
def live_db(pg_server_url: str) -> Iterator[str]:
    """A database of its own: the live query's state (live_state, live_coverage) starts empty."""
    name = f"test_live_cluster_{uuid.uuid4().hex[:8]}"
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    try:
        yield url
    finally:
        with connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_trades(url: str, day_start: datetime) -> None:
    base = day_start + timedelta(hours=10)
    rows = [(symbol, i, Decimal("100.5") + Decimal(i % 89) / 1000 + n,
             Decimal("0.00100000") * (1 + i % 7), base + timedelta(milliseconds=50 * (i - 1)),
             base,
             i % 2 == 0)
            for n, symbol in enumerate(SYMBOLS) for i in range(1, TRADES + 1)]
    with connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT ensure_trades_partition(%s)", (day_start.date(),))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time,"
                " is_buyer_maker) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def test_live_query_runs_on_a_standalone_cluster(
    spark_standalone: StandaloneCluster, live_db: str, tmp_path: Path
) -> None:
    since = default_since(datetime.now(UTC))  # yesterday 00:00, the start of the live scope
    insert_trades(live_db, since)
    apps_before = set(spark_standalone.work_dir.glob("app-*"))
    env = {**os.environ, "DATABASE_URL": live_db, "SYMBOLS": ",".join(SYMBOLS),
           "SPARK_MASTER": spark_standalone.url,
           "LIVE_CHECKPOINT_URI": str(tmp_path / "checkpoint"), "LIVE_TRIGGER_SECONDS": "1"}
    log = tmp_path / "live.log"
    process = subprocess.Popen([sys.executable, "-m", "live"], cwd=tmp_path, env=env,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        def counted_all() -> bool:
            if process.poll() is not None:
                raise AssertionError("python -m live exited:\n" + log.read_text()[-3000:])
            return live_caught_up(live_db, SYMBOLS, since)

        wait_for(counted_all, "the live bars to count every trade", 240)
        # The driver JVM runs with the live query's memory bounds (live/main.py).
        jvm = [" ".join(child.cmdline()) for child in psutil.Process(process.pid).children()
               if child.name() == "java"]
        assert len(jvm) == 1, jvm
        assert {*LIVE_JAVA_OPTIONS, f"-Xmx{DRIVER_MEMORY}"} <= set(jvm[0].split()), jvm[0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    assert "live bars: batches" in log.read_text()
    assert assert_bars_equal_raw(live_db, SYMBOLS, since) == 2 * 2  # two minutes per symbol

    # The work ran in an executor that the worker launched for this application, with Python
    # workers of its own (the source's reads).
    apps = set(spark_standalone.work_dir.glob("app-*")) - apps_before
    assert len(apps) == 1, apps
    executor_logs = [path.read_text() for path in apps.pop().glob("*/stderr")]
    assert any("Finished task" in text for text in executor_logs), executor_logs
