"""The live bars query against real components: the replay feed through the streamer into
PostgreSQL, the Structured Streaming query on Spark with its checkpoint on S3 (moto's server,
through s3a), bars_1m compared for every minute with an independent aggregation of the raw
table (complete included, nothing counted twice), and the day's batch facts compared with the
bars by the batch's own quality report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from binance_etl.db import connect
from binance_etl.replay.testing import running_feed
from binance_etl.settings import load_settings
from etl.pipeline import stage_day
from live.offsets import default_since
from tests.integration.test_live_s3_checkpoint import PREFIX, checkpoint_keys
from tests.plugins.ingest import DedicatedPostgres, StreamerThread
from tests.plugins.live import assert_bars_equal_raw, live_bars, live_caught_up, wait_for

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
SYNTHETIC = "SYNUSDT"  # yesterday's trades written directly, with a gap filled later
ROOT = Path(__file__).resolve().parents[2]


def synthetic_trades(day_start: datetime, ids: range) -> list[tuple]:
    """Trades of SYNTHETIC on `day_start`'s day from 10:00, 50 ms apart, exact decimals."""
    base = day_start + timedelta(hours=10)
    return [(SYNTHETIC, i, Decimal("64000.12345678") + Decimal(i % 97) / 100,
             Decimal("0.00012345") * (1 + i % 13), base + timedelta(milliseconds=50 * i),
             base, i % 3 == 0) for i in ids]


def insert(url: str, rows: list[tuple]) -> None:
    with connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time,"
            " is_buyer_maker) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def coverage_runs(url: str, symbol: str) -> int:
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM live_coverage WHERE symbol = %s",
                           (symbol,)).fetchone()
    return int(row[0]) if row else 0


def live_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m live` in its own process group (driver, JVM and Python workers)."""
    return subprocess.Popen([sys.executable, "-m", "live"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def last_batch(url: str) -> int:
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT last_batch_id FROM live_state").fetchone()
    return -1 if row is None else int(row[0])


def test_faults_kill_9_and_a_postgres_restart_lose_and_double_nothing(
    spark: object, dedicated_pg: DedicatedPostgres, tmp_path: Path,
    run_streamer: Callable[..., StreamerThread], s3_server: str, s3_bucket: str,
) -> None:
    """One run through every fault (one Spark start per `python -m live` process): socket
    drops (late trades from REST), duplicated frames, yesterday's trades with a gap filled
    late, a kill -9 of the live process group and a restart, a PostgreSQL restart under the
    restarted query; then bars == raw aggregation and the day's batch facts == bars."""
    url = dedicated_pg.url
    since = default_since(datetime.now(UTC))
    yesterday = since  # the scope starts at yesterday's 00:00
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_trades_partition(%s)", (yesterday.date(),))
    # Yesterday's trades with ids 1500..1599 missing: provisional bars until they arrive.
    insert(url, synthetic_trades(yesterday, range(1, 1500)))
    insert(url, synthetic_trades(yesterday, range(1600, 3000)))
    symbols = [*SYMBOLS, SYNTHETIC]
    env = {**os.environ, "DATABASE_URL": url, "SYMBOLS": ",".join(symbols),
           # the checkpoint on S3 (moto), through s3a: what a kill -9 must resume from
           "LIVE_CHECKPOINT_URI": f"s3://{s3_bucket}/{PREFIX}",
           "S3_ENDPOINT_URL": s3_server, "LIVE_TRIGGER_SECONDS": "0.5",
           "SPARK_MASTER": "local[2]"}
    log = tmp_path / "live.log"
    processes: list[subprocess.Popen[bytes]] = []
    with running_feed(symbols=SYMBOLS, rate=600, drop_after_frames=600,
                      duplicate_fraction=0.05) as feed:
        runner = run_streamer(symbols=tuple(SYMBOLS), database_url=url, ws_url=feed.ws_url,
                              rest_url=feed.rest_url, reconnect_max_seconds=0.5)
        try:
            processes.append(live_process(env, log))
            # The gap is open: its symbol's bars are provisional and the others flow on.
            wait_for(lambda: coverage_runs(url, SYNTHETIC) == 2 and last_batch(url) >= 1,
                     "provisional bars of the gapped symbol", 240)
            bars = live_bars(url)
            gap_minute = yesterday.replace(hour=10, minute=1)  # ids 1500..1599: 10:01:15-20
            assert bars[(SYNTHETIC, gap_minute)]["complete"] is False
            assert any(key[0] == "BTCUSDT" for key in bars)

            os.killpg(processes[0].pid, signal.SIGKILL)  # driver, JVM and workers
            processes[0].wait(30)
            killed_at = last_batch(url)
            processes.append(live_process(env, log))
            wait_for(lambda: last_batch(url) > killed_at, "the restarted process's batches", 240)

            # PostgreSQL goes away under the running query while trades keep coming.
            produced = feed.stats()["symbols"]["BTCUSDT"]["produced"]
            dedicated_pg.server.stop("fast")
            feed.wait_until(lambda s: s["symbols"]["BTCUSDT"]["produced"] >= produced + 600,
                            timeout=60)
            dedicated_pg.server.restart()
            insert(url, synthetic_trades(yesterday, range(1500, 1600)))  # the late trades
            feed.wait_until(lambda s: s["connections_total"] >= 3, timeout=60)
            stats = feed.pause()
            runner.wait_caught_up({s: stats["symbols"][s]["last_id"] for s in SYMBOLS}, 60)
            summary = runner.stop()
            assert summary.duplicates > 0
            assert summary.gaps_found > 0
            wait_for(lambda: live_caught_up(url, symbols, since), "the live bars to catch up")
            assert coverage_runs(url, SYNTHETIC) == 1  # the gap closed: one run
            assert processes[1].poll() is None, log.read_text()[-3000:]  # survived the restart
            processes[1].send_signal(signal.SIGTERM)
            assert processes[1].wait(60) == 0, log.read_text()[-3000:]
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(30)
    assert "live bars: batches" in log.read_text()  # the clean stop's summary
    # The checkpoint is on S3, and the restart resumed from it: a fresh checkpoint would have
    # started again at batch 0, which the wait for `last_batch > killed_at` would not pass.
    keys = checkpoint_keys(s3_server, s3_bucket)
    assert {"metadata", "offsets/0", "commits/0", f"offsets/{killed_at + 1}"} <= set(keys), keys
    assert assert_bars_equal_raw(url, symbols, since) >= 5

    # The batch of yesterday: its facts equal the bars, by its own quality report.
    settings = load_settings(database_url=url, lake_uri=str(tmp_path / "lake"))
    staged = stage_day(yesterday.date(), settings, spark=spark)  # type: ignore[arg-type]
    report = json.loads(Path(staged["report"].removeprefix("file://")).read_text())
    check = {c["name"]: c for c in report["checks"]}["live_bars_equal_facts"]
    assert check["passed"] is True, check
    assert report["live_bars"]["compared"] == report["live_bars"]["bars"] == 3  # 3000 × 50 ms
    assert report["live_bars"]["differing_total"] == 0
    assert report["passed"] is True
