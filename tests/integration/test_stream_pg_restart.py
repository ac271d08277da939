"""PostgreSQL restarting under the streamer: reads pause at the memory bound, batches are
retried, and the day still ends complete and exact."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from binance_etl.replay.testing import running_feed
from tests.plugins.ingest import DedicatedPostgres, StreamerThread, market_trades, stored_trades

pytestmark = pytest.mark.integration


def test_database_restart_mid_run_loses_nothing(
    dedicated_pg: DedicatedPostgres, run_streamer: Callable[..., StreamerThread]
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    with running_feed(symbols=symbols, rate=3000) as feed:
        runner = run_streamer(symbols=tuple(symbols), database_url=dedicated_pg.url,
                              ws_url=feed.ws_url, rest_url=feed.rest_url,
                              max_buffered_trades=1000, quiet_probe_seconds=1.0)
        writer = runner.streamer.writer
        deadline = time.monotonic() + 20
        while writer.stats.committed < 3000:
            assert time.monotonic() < deadline, "streamer never committed"
            time.sleep(0.05)
        dedicated_pg.server.stop("fast")  # down for a while: the buffer fills, reads pause
        time.sleep(2.0)
        assert runner.streamer._paused
        assert writer.pending >= 1000
        dedicated_pg.server.restart()  # same port again
        time.sleep(1.5)
        stats = feed.pause()
        runner.wait_caught_up({s: stats["symbols"][s]["last_id"] for s in symbols})
        summary = runner.stop()
        for symbol in symbols:
            stored = stored_trades(dedicated_pg.url, symbol)
            assert stored == [row for row in market_trades(feed, symbol) if row[0] >= stored[0][0]]
    assert summary.db_retries >= 1
    assert summary.uncommitted == 0
    # While reads were paused the feed's socket buffers held the stream (TCP back-pressure);
    # a server that drops such a slow reader instead leaves a gap that REST fills.
    assert summary.gaps_lost == 0
