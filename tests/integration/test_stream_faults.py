"""The streamer against the replay feed's faults: what is stored equals what the market
produced — none missing, none twice, every price, quantity and time exact."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest

from binance_etl.ingest.stats import Summary
from binance_etl.localpg import free_port
from binance_etl.replay.testing import FeedHandle, running_feed
from tests.plugins.ingest import StreamerThread, market_trades, stored_trades

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def finish(feed: FeedHandle, runner: StreamerThread, url: str) -> Summary:
    """Stop the market, let the streamer catch up, stop it, and compare both sides exactly."""
    stats = feed.pause()
    runner.wait_caught_up({s: stats["symbols"][s]["last_id"] for s in SYMBOLS})
    summary = runner.stop()
    assert summary.uncommitted == 0
    for symbol in SYMBOLS:
        market = market_trades(feed, symbol)
        stored = stored_trades(url, symbol)
        first_stored = stored[0][0]
        # Everything from the first trade the streamer saw onwards, exactly once.
        assert stored == [row for row in market if row[0] >= first_stored]
        assert len(stored) > 1000
    return summary


def test_drops_duplicates_corrupt_frames_and_429s_lose_nothing(
    ingest_db: str, run_streamer: Callable[..., StreamerThread]
) -> None:
    with running_feed(symbols=SYMBOLS, rate=2000, drop_after_frames=1500,
                      duplicate_fraction=0.05, corrupt_fraction=0.01, rest_429_every=4) as feed:
        runner = run_streamer(symbols=tuple(SYMBOLS), database_url=ingest_db,
                              ws_url=feed.ws_url, rest_url=feed.rest_url,
                              reconnect_max_seconds=0.5, quiet_probe_seconds=1.0)
        feed.wait_until(lambda s: s["connections_total"] >= 4, timeout=20)
        summary = finish(feed, runner, ingest_db)
        feed_stats = feed.stats()
    assert feed_stats["rest_429"] > 0
    assert feed_stats["rest_418"] == 0  # Retry-After was honoured by every request
    assert summary.reconnects >= 3
    assert summary.duplicates > 0
    assert summary.malformed > 0
    assert summary.gaps_found > 0
    assert summary.gaps_filled == summary.gaps_found
    assert summary.gaps_lost == 0
    assert summary.rest_trades > 0
    assert runner.streamer.rest.rate_limited > 0


def test_connections_are_renewed_with_overlap_and_nothing_missed(
    ingest_db: str, run_streamer: Callable[..., StreamerThread], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="binance_etl.ingest.streamer")
    with running_feed(symbols=SYMBOLS, rate=2000) as feed:
        runner = run_streamer(symbols=tuple(SYMBOLS), database_url=ingest_db,
                              ws_url=feed.ws_url, rest_url=feed.rest_url,
                              max_age_seconds=1.0, quiet_probe_seconds=60.0, metrics_port=port)
        feed.wait_until(lambda s: s["connections_total"] >= 4, timeout=20)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        summary = finish(feed, runner, ingest_db)
    committed = re.search(r"^binance_ingest_committed_total (\S+)$", metrics, re.MULTILINE)
    assert committed is not None
    assert float(committed.group(1)) > 0
    assert "binance_ingest_queue_depth" in metrics
    assert any("trades/s committed, lag" in r.getMessage() for r in caplog.records)
    assert summary.renewals >= 3
    assert summary.reconnects == 0  # every replacement was opened before the old one closed
    assert summary.gaps_found == 0  # the overlap alone kept the stream continuous
    assert summary.rest_trades == 0


def test_silent_sockets_are_replaced_and_the_silence_recovered(
    ingest_db: str, run_streamer: Callable[..., StreamerThread]
) -> None:
    with running_feed(symbols=SYMBOLS, rate=2000, silent_after=1.0, silent_for=30.0) as feed:
        runner = run_streamer(symbols=tuple(SYMBOLS), database_url=ingest_db,
                              ws_url=feed.ws_url, rest_url=feed.rest_url,
                              silence_seconds=0.7, reconnect_max_seconds=0.5,
                              streams_per_connection=1)  # one connection per symbol
        feed.wait_until(lambda s: s["connections_total"] >= 6, timeout=20)
        summary = finish(feed, runner, ingest_db)
    assert len(runner.streamer.connections) == 2
    assert summary.watchdog_replacements >= 4
    assert summary.gaps_found > 0  # trades made while the socket was silent...
    assert summary.gaps_filled == summary.gaps_found  # ...all came from REST


def test_pings_are_answered_and_shutdown_notices_renew_before_the_cut(
    ingest_db: str, run_streamer: Callable[..., StreamerThread]
) -> None:
    # Pings every 0.3 s, dropped after 1 s unanswered: the streamer's pongs keep it connected.
    with running_feed(symbols=SYMBOLS, rate=2000, max_lifetime=3.0, shutdown_notice=1.0,
                      ping_interval=0.3, pong_timeout=1.0) as feed:
        runner = run_streamer(symbols=tuple(SYMBOLS), database_url=ingest_db,
                              ws_url=feed.ws_url, rest_url=feed.rest_url,
                              quiet_probe_seconds=60.0)
        feed.wait_until(lambda s: s["connections_total"] >= 3, timeout=20)
        summary = finish(feed, runner, ingest_db)
    assert summary.renewals >= 2  # each announced shutdown (after 2 s) led to a renewal...
    assert summary.reconnects == 0  # ...before the server's cut at 3 s
    assert summary.gaps_found == 0
