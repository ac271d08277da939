"""The live bars query through a real Spark Connect server (SPARK_REMOTE): trades written the
whole time, the server crashed (SIGKILL) under the running query and started again on the same
port; `python -m live` waits for it, resumes the query from its checkpoint, and bars_1m equals
the independent aggregation of the raw table for every minute (nothing lost, nothing counted
twice, `complete` right). The in-process query is held to the same aggregation by
test_live_bars.py, so both modes give the same bars."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from binance_etl.db import connect, scratch_database
from live.offsets import default_since
from tests.integration.test_live_bars import coverage_runs, insert, last_batch, synthetic_trades
from tests.plugins.live import assert_bars_equal_raw, live_caught_up, wait_for
from tests.plugins.spark import ConnectServer

pytestmark = pytest.mark.integration

SYMBOL = "SYNUSDT"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def live_db(pg_server_url: str) -> Iterator[str]:
    """A database of this test alone (bars_1m and the live state are the query's own)."""
    with scratch_database(pg_server_url, "test_live") as url:
        yield url


class Writer(threading.Thread):
    """Inserts the next 40 trades every 0.2 s (yesterday from 10:00, 50 ms apart)."""

    def __init__(self, url: str, day: datetime) -> None:
        super().__init__(daemon=True)
        self.url, self.day, self.next_id = url, day, 1
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(0.2):
                insert(self.url, synthetic_trades(self.day, range(self.next_id,
                                                                   self.next_id + 40)))
                self.next_id += 40
        except BaseException as error:  # surfaced by the test
            self.error = error


def test_live_query_through_spark_connect_survives_a_server_crash(
    spark_connect_server: ConnectServer, live_db: str, tmp_path: Path
) -> None:
    url, server = live_db, spark_connect_server
    since = default_since(datetime.now(UTC))
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_trades_partition(%s)", (since.date(),))
    insert(url, synthetic_trades(since, range(1, 600)))
    writer = Writer(url, since)
    writer.next_id = 600
    log = tmp_path / "live.log"
    env = {**os.environ, "DATABASE_URL": url, "SYMBOLS": SYMBOL, "SPARK_REMOTE": server.url,
           "LIVE_CHECKPOINT_URI": str(tmp_path / "checkpoint"), "LIVE_TRIGGER_SECONDS": "0.5"}
    process = subprocess.Popen([sys.executable, "-m", "live", "--reconnect-seconds", "240"],
                               cwd=ROOT, env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        writer.start()
        wait_for(lambda: last_batch(url) >= 1, "micro-batches through the server", 180)
        server.kill()  # a crash under the running query, trades still coming
        crashed_at = last_batch(url)
        wait_for(lambda: "lost the live query" in log.read_text(), "the client to notice", 60)
        server.start()  # the same port: the same SPARK_REMOTE
        wait_for(lambda: last_batch(url) > crashed_at + 1, "batches after the restart", 180)
        writer.done.set()
        writer.join(10)
        assert writer.error is None, writer.error
        wait_for(lambda: live_caught_up(url, [SYMBOL], since), "the bars to catch up", 120)
        assert process.poll() is None, log.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        writer.done.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    text = log.read_text()
    assert "is back after" in text, text[-3000:]  # it waited, reconnected and resumed
    assert "live bars: batches" in text  # the clean stop's summary
    assert coverage_runs(url, SYMBOL) == 1  # every id from the first on, counted once
    assert assert_bars_equal_raw(url, [SYMBOL], since) >= 2
