"""Ingest benchmark: replay feed → `python stream.py` → committed rows, against a naive writer.

From one run it prints, for the streamer and for a naive baseline (the `websockets` client,
`json`, one `INSERT` and commit per trade):

- sustained trades/s from the feed to committed rows (feed in fast mode, as fast as read),
  and whether anything was lost (stored ids == produced ids);
- event→commit lag p50/p99 with the feed paced at 5,000 trades/s;
- peak RSS (VmHWM) of the ingesting process.

Both ingesters run as their own processes against a fresh database on the project's local
PostgreSQL (or DATABASE_URL's server); the feed runs in a third. `python -m bench.ingest
[--trades 300000] [--lag-seconds 15] [--naive-seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from binance_etl.db import connect, resolve_database_url, scratch_database
from binance_etl.localpg import free_port
from binance_etl.replay.testing import FeedHandle, running_feed
from binance_etl.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------------

@contextmanager
def fresh_database() -> Iterator[str]:
    with scratch_database(resolve_database_url(load_settings()), "bench_ingest") as url:
        yield url


def truncate(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE trades")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving other sessions of this database."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()
    return [row[0] for row in rows]


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line.startswith("binance_ingest_"):
            name, value = line.rsplit(" ", 1)
            values[name.removesuffix("_total")] = float(value)
    return values


def stored_ids(url: str) -> dict[str, tuple[int, int, int, int]]:
    """Per symbol: rows, distinct ids, min id, max id."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*), count(DISTINCT trade_id), min(trade_id), max(trade_id) "
            "FROM trades GROUP BY symbol").fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def lost_or_doubled(url: str, feed_stats: dict[str, Any]) -> int:
    """Trades produced but not stored, plus trades stored twice (0 when exact)."""
    stored = stored_ids(url)
    bad = 0
    for symbol in SYMBOLS:
        info = feed_stats["symbols"][symbol]
        rows, distinct, low, high = stored.get(symbol, (0, 0, 0, 0))
        bad += rows - distinct
        if distinct:
            # ids are consecutive: distinct == span means no holes inside what was stored
            bad += (high - low + 1) - distinct
            bad += abs(info["last_id"] - high)
    return bad


def stop(process: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def percentile(histogram: Counter[int], fraction: float) -> float | None:
    total = sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > fraction * (total - 1):
            return float(value)
    return None


# -- the streamer ----------------------------------------------------------------------------

def start_streamer(url: str, feed: FeedHandle, metrics_port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url,
           "BINANCE_WS_URL": feed.ws_url, "BINANCE_REST_URL": feed.rest_url,
           "SYMBOLS": ",".join(SYMBOLS), "METRICS_PORT": str(metrics_port),
           "LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "stream.py"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_metrics(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"streamer exited: {process.communicate()[1][-2000:]}")
        try:
            scrape(port)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def streamer_throughput(url: str, trades_per_symbol: int) -> dict[str, Any]:
    port = free_port()
    with running_feed(symbols=SYMBOLS, rate=0, max_trades=trades_per_symbol,
                      history_limit=trades_per_symbol + 10) as feed:
        process = start_streamer(url, feed, port)
        try:
            wait_metrics(port, process)
            total = trades_per_symbol * len(SYMBOLS)
            first_at = None
            first_count = 0.0
            pids: list[int] = []
            cpu_start: dict[int, float] = {}
            deadline = time.monotonic() + 240
            while True:
                committed = scrape(port).get("binance_ingest_committed", 0.0)
                now = time.monotonic()
                if first_at is None and committed > 0:
                    first_at, first_count = now, committed
                    pids = [process.pid, feed.process.pid, *backend_pids(url)]
                    cpu_start = {pid: cpu_seconds(pid) for pid in pids}
                if committed >= total or now > deadline:
                    break
                time.sleep(0.2)  # each scrape costs the streamer a little CPU
            elapsed = now - (first_at or now)
            cpu = {pid: cpu_seconds(pid) - cpu_start[pid] for pid in pids}
            rss = peak_rss_mb(process.pid)
            feed_stats = feed.stats()
        finally:
            out, err = stop(process)
    if process.returncode != 0:
        raise RuntimeError(f"streamer exit {process.returncode}: {err[-2000:]}")
    counted = committed - first_count
    per_trade = {pid: round(seconds / counted * 1e6, 1) if counted else 0.0
                 for pid, seconds in cpu.items()}
    return {
        "trades": int(committed),
        "seconds": round(elapsed, 2),
        "trades_per_s": round(counted / elapsed) if elapsed else 0,
        "cpu_us_per_trade": {
            "streamer": per_trade.get(process.pid, 0.0),
            "feed": per_trade.get(feed.process.pid, 0.0),
            "postgres": round(sum(v for pid, v in per_trade.items()
                                  if pid not in (process.pid, feed.process.pid)), 1),
        },
        "lost_or_doubled": lost_or_doubled(url, feed_stats),
        "peak_rss_mb": round(rss, 1),
        "summary": out.strip().splitlines(),
    }


def streamer_lag(url: str, rate: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    with running_feed(symbols=SYMBOLS, rate=rate) as feed:
        process = start_streamer(url, feed, port)
        try:
            wait_metrics(port, process)
            time.sleep(seconds)
            metrics = scrape(port)
            rss = peak_rss_mb(process.pid)
        finally:
            stop(process)
    return {
        "rate": rate,
        "trades": int(metrics.get("binance_ingest_committed", 0)),
        "lag_p50_ms": metrics.get("binance_ingest_commit_lag_p50_ms"),
        "lag_p99_ms": metrics.get("binance_ingest_commit_lag_p99_ms"),
        "peak_rss_mb": round(rss, 1),
    }


# -- the naive baseline ----------------------------------------------------------------------

async def naive_worker(ws_url: str, url: str, seconds: float) -> dict[str, Any]:
    """The textbook streamer: websockets + json, one INSERT and commit per trade."""
    import websockets

    streams = "/".join(f"{s.lower()}@trade" for s in SYMBOLS)
    lags: Counter[int] = Counter()
    count = 0
    conn = connect(url, autocommit=True)
    deadline = time.monotonic() + seconds
    async with websockets.connect(f"{ws_url}/stream?streams={streams}", max_size=None) as ws:
        while time.monotonic() < deadline:
            data = json.loads(await ws.recv())["data"]
            conn.execute(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time, "
                "is_buyer_maker) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (data["s"], data["t"], Decimal(data["p"]), Decimal(data["q"]),
                 EPOCH + timedelta(milliseconds=data["T"]),
                 EPOCH + timedelta(milliseconds=data["E"]), data["m"]),
            )
            count += 1
            lags[int(time.time() * 1000) - data["E"]] += 1
    conn.close()
    return {"count": count, "lags": lags}


def run_naive(url: str, feed: FeedHandle, seconds: float) -> dict[str, Any]:
    out_path = f"/tmp/bench-naive-{uuid.uuid4().hex[:8]}.json"
    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "--naive-worker", feed.ws_url, url, str(seconds),
         out_path], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds * 0.9)
    rss = peak_rss_mb(process.pid)
    _, err = process.communicate(timeout=seconds + 60)
    if process.returncode != 0:
        raise RuntimeError(f"naive writer failed: {err[-2000:]}")
    result = json.loads(Path(out_path).read_text())
    Path(out_path).unlink()
    lags = Counter({int(k): v for k, v in result["lags"].items()})
    return {"trades": result["count"], "seconds": seconds, "peak_rss_mb": round(rss, 1),
            "lag_p50_ms": percentile(lags, 0.5), "lag_p99_ms": percentile(lags, 0.99)}


def naive_throughput(url: str, seconds: float) -> dict[str, Any]:
    with running_feed(symbols=SYMBOLS, rate=0) as feed:
        result = run_naive(url, feed, seconds)
    result["trades_per_s"] = round(result["trades"] / seconds)
    return result


def naive_lag(url: str, rate: int, seconds: float) -> dict[str, Any]:
    with running_feed(symbols=SYMBOLS, rate=rate) as feed:
        result = run_naive(url, feed, seconds)
    result["rate"] = rate
    return result


# -- run -------------------------------------------------------------------------------------

def run(trades_per_symbol: int = 300_000, lag_rate: int = 5000, lag_seconds: float = 15.0,
        naive_seconds: float = 10.0) -> dict[str, Any]:
    """Every figure of the ingest benchmark, as a dict."""
    load_before = os.getloadavg()[0]
    with fresh_database() as url:
        streamer = streamer_throughput(url, trades_per_symbol)
        truncate(url)
        lag = streamer_lag(url, lag_rate, lag_seconds)
        truncate(url)
        naive = naive_throughput(url, naive_seconds)
        truncate(url)
        naive_at_rate = naive_lag(url, lag_rate, naive_seconds)
    return {
        "streamer": {**streamer, "lag_at_rate": lag},
        "naive": {**naive, "lag_at_rate": naive_at_rate},
        "ratio_trades_per_s": round(streamer["trades_per_s"] / max(naive["trades_per_s"], 1), 1),
        "cores": os.cpu_count(),
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def print_report(result: dict[str, Any]) -> None:
    s, n = result["streamer"], result["naive"]
    sl, nl = s["lag_at_rate"], n["lag_at_rate"]
    rows = [
        ("sustained trades/s (feed -> committed)", f"{s['trades_per_s']:,}",
         f"{n['trades_per_s']:,}"),
        ("  trades committed in the run", f"{s['trades']:,} in {s['seconds']} s",
         f"{n['trades']:,} in {n['seconds']} s"),
        ("  lost or doubled", str(s["lost_or_doubled"]), "n/a"),
        (f"event->commit lag p50 at {sl['rate']:,}/s (ms)", str(sl["lag_p50_ms"]),
         str(nl["lag_p50_ms"])),
        (f"event->commit lag p99 at {sl['rate']:,}/s (ms)", str(sl["lag_p99_ms"]),
         str(nl["lag_p99_ms"])),
        ("peak RSS, throughput run (MB)", str(s["peak_rss_mb"]), str(n["peak_rss_mb"])),
        ("peak RSS, paced run (MB)", str(sl["peak_rss_mb"]), str(nl["peak_rss_mb"])),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'stream.py':>20}  {'naive':>20}")
    for name, a, b in rows:
        print(f"{name:{width}}  {a:>20}  {b:>20}")
    cpu = s["cpu_us_per_trade"]
    print(f"ratio (sustained trades/s, stream.py / naive): {result['ratio_trades_per_s']}x "
          f"on {result['cores']} cores")
    print(f"CPU per committed trade in the throughput run: stream.py {cpu['streamer']} us, "
          f"PostgreSQL {cpu['postgres']} us, replay feed {cpu['feed']} us; load average "
          f"before/after: {result['load_average_1m'][0]} / {result['load_average_1m'][1]}")
    print("stream.py summary:", *s["summary"], sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--naive-worker"]:
        ws_url, url, seconds, out_path = argv[1:5]
        result = asyncio.run(naive_worker(ws_url, url, float(seconds)))
        Path(out_path).write_text(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--trades", type=int, default=300_000, help="per symbol, fast mode")
    parser.add_argument("--lag-rate", type=int, default=5000)
    parser.add_argument("--lag-seconds", type=float, default=15.0)
    parser.add_argument("--naive-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = run(args.trades, args.lag_rate, args.lag_seconds, args.naive_seconds)
    print_report(result)
    targets_met = (result["streamer"]["trades_per_s"] >= 50_000
                   and result["streamer"]["lost_or_doubled"] == 0)
    print(f"target >= 50,000 trades/s with nothing lost: {'met' if targets_met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
