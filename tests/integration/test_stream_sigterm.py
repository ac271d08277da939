"""`python stream.py` as a real process: SIGTERM flushes and exits 0, the next start resumes
from the last stored id, and bad symbols stop it at start with one clear line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from binance_etl.db import connect
from binance_etl.ingest.streamer import Streamer, StreamerConfig
from binance_etl.localpg import free_port
from binance_etl.replay.testing import running_feed
from tests.plugins.ingest import market_trades, stored_trades

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def stream_process(url: str, ws_url: str, rest_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url, "BINANCE_WS_URL": ws_url,
           "BINANCE_REST_URL": rest_url, "SYMBOLS": ",".join(SYMBOLS), "LOG_LEVEL": "INFO"}
    return subprocess.Popen([sys.executable, "stream.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count_rows(url: str) -> int:
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM trades").fetchone()
    return int(row[0]) if row else 0


def test_sigterm_flushes_exits_zero_and_the_next_start_completes_the_day(ingest_db: str) -> None:
    with running_feed(symbols=SYMBOLS, rate=3000) as feed:
        process = stream_process(ingest_db, feed.ws_url, feed.rest_url)
        try:
            deadline = time.monotonic() + 30
            while count_rows(ingest_db) < 5000:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "nothing stored in time"
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        assert "committed" in out
        assert "0 not committed" in out
        first = {s: stored_trades(ingest_db, s) for s in SYMBOLS}
        for symbol, stored in first.items():
            market = {row[0]: row for row in market_trades(feed, symbol)}
            assert stored == [market[row[0]] for row in stored]  # exact, once each
            assert [row[0] for row in stored] == list(range(stored[0][0], stored[-1][0] + 1))

        # The market goes on without us; a new start fetches what it missed from REST.
        stats = feed.pause()
        rerun = stream_process(ingest_db, feed.ws_url, feed.rest_url, "--duration", "3")
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert "resuming after stored id" in err
        for symbol in SYMBOLS:
            stored = stored_trades(ingest_db, symbol)
            start = first[symbol][0][0]
            expected = [row for row in market_trades(feed, symbol) if row[0] >= start]
            assert stored == expected
            assert stored[-1][0] == stats["symbols"][symbol]["last_id"]


def test_unknown_symbol_stops_at_start_with_one_line(ingest_db: str) -> None:
    with running_feed(symbols=SYMBOLS, rate=100) as feed:
        process = stream_process(ingest_db, feed.ws_url, feed.rest_url,
                                 "--symbols", "btcusdt,NOPEUSDT", "--duration", "5")
        _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert err.strip().splitlines()[-1] == f"unknown symbol(s) on {feed.rest_url}: NOPEUSDT"
    assert "Traceback" not in err


def test_malformed_symbol_is_a_configuration_error() -> None:
    process = stream_process("postgresql://nobody@127.0.0.1:1/none", "ws://127.0.0.1:1",
                             "http://127.0.0.1:1", "--symbols", "BTC/USDT")
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert err.strip().splitlines() == [
        "configuration error: --symbols: 'BTC/USDT' is not a Binance symbol "
        "(letters and digits, e.g. BTCUSDT)"]


def test_unreachable_database_at_start_is_one_line_after_some_patience() -> None:
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    streamer = Streamer(StreamerConfig(symbols=("BTCUSDT",), database_url=dead,
                                       ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1",
                                       check_symbols=False))
    started = time.monotonic()
    with pytest.raises(SystemExit, match=r"^database unreachable: postgresql://nobody@.*refused"):
        asyncio.run(streamer._prepare_database_with_retries(patience=1.0))
    assert 1.0 <= time.monotonic() - started < 10
