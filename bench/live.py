"""Live bars benchmark: replay feed → `stream.py` → trades → `python -m live` → bars_1m.

From one run it prints:

- freshness: with the feed paced at `--rate` trades/s (default 5,000, all symbols together)
  through `stream.py`, the time from a trade's commit in `trades` to a bars_1m row counting it,
  p50/p99. A poller in this process samples, every 100 ms, the highest committed trade id per
  symbol and the id up to which the live query has counted (its `live_coverage`, written in
  the same transaction as the bars); a sample's freshness is the time until the counted id
  passes the committed one. Resolution: the 100 ms poll;
- the same freshness for a naive alternative running beside it in the same run: a loop that
  re-aggregates the current UTC day with one SQL `GROUP BY` into its own table every second
  (DELETE + INSERT in one transaction), and how long one such pass takes per million rows.
  Both start with `--day-trades` earlier trades of the day already stored (two more symbols),
  so that the naive pass has a realistic part of a day to re-read;
- catch-up throughput: `--catchup-trades` trades written straight into `trades`, then a fresh
  live query started; trades per second of micro-batch processing (the cold first batch
  apart), read from its log; batches hold at most 1,000,000 trades;
- memory of the live process tree (Python driver + JVM + the JVM's Python daemon and workers):
  PSS over the run (shared pages split between processes) and the summed peak RSS.

`--remote`: the same runs with the live query through a Spark Connect server started for the
run (`etl.connect_server`, SPARK_MASTER of the environment): the client's SPARK_REMOTE points
at it, the sink's micro-batch lines are read from the server's log, and the peak RSS is given
for the client and for the server's tree (JVM + its Python workers, which run the source and
the sink) separately.

Everything runs against a fresh database on the project's PostgreSQL (or DATABASE_URL's
server).
`python -m bench.live [--rate 5000] [--seconds 60] [--catchup-trades 3000000] [--no-paced]
[--remote]`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from bench.ingest import fresh_database as ingest_database
from binance_etl.db import connect
from binance_etl.replay.testing import running_feed
from binance_etl.schema import ensure_partitions

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
DAY_SYMBOLS = ["BNBUSDT", "SOLUSDT"]  # the day's earlier trades, preloaded (ids of their own)
POLL_SECONDS = 0.1

NAIVE_SQL = """
BEGIN;
DELETE FROM naive_bars;
INSERT INTO naive_bars
SELECT symbol, date_trunc('minute', trade_time), min(price), max(price), avg(price),
       sum(quantity), sum(price * quantity), count(*),
       (array_agg(price ORDER BY trade_time, trade_id))[1],
       (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1],
       max(trade_id)
FROM trades WHERE trade_time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY 1, 2;
COMMIT;
"""
NAIVE_DDL = """
CREATE TABLE IF NOT EXISTS naive_bars (symbol text, trade_minute timestamptz,
    min_price numeric, max_price numeric, avg_price numeric, total_quantity numeric,
    total_trade_value numeric, trade_count bigint, open_price numeric, close_price numeric,
    last_id bigint)
"""


@contextmanager
def fresh_database() -> Iterator[str]:
    """bench.ingest's fresh database, with the naive loop's table."""
    with ingest_database() as url:
        with connect(url, autocommit=True) as conn:
            conn.execute(NAIVE_DDL)
        yield url


def tree_processes(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (the JVM's Python daemon and workers included)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) summed over a process tree, in MB. RSS counts pages shared between the
    processes (the forked Python workers share most of theirs) once per process; PSS splits
    them, so its sum is what the tree really holds."""
    rss = pss = 0.0
    for process in tree_processes(pid):
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss / 2**20
        pss += info.pss / 2**20
    return rss, pss


def tree_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) summed over a process tree (shared pages once per process)."""
    total = 0.0
    for process in tree_processes(pid):
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return total


class Server:
    """The Spark Connect server of a `--remote` run (None: the query runs in process)."""

    def __init__(self, directory: Path) -> None:
        from binance_etl.settings import load_settings
        from etl import connect_server

        self.directory = directory
        self.state = connect_server.start(load_settings(), directory=directory, port=0)
        self.log = Path(self.state.log)
        self.mark = 0

    def begin(self) -> None:
        """Lines of its log from now on belong to the next run."""
        self.mark = self.log.stat().st_size if self.log.exists() else 0

    def lines(self) -> str:
        with self.log.open("rb") as handle:
            handle.seek(self.mark)
            return handle.read().decode(errors="replace")

    def stop(self) -> None:
        from etl import connect_server

        connect_server.stop(self.directory)


SERVER: Server | None = None


def sink_lines(log: Path) -> str:
    """The live query's log lines, the sink's included (the server's log through Connect)."""
    return log.read_text() + (SERVER.lines() if SERVER is not None else "")


def start_live(url: str, checkpoint: Path, log: Path,
               symbols: list[str] = SYMBOLS) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "SYMBOLS": ",".join(symbols),
           "LIVE_CHECKPOINT_URI": str(checkpoint), "LOG_LEVEL": "INFO"}
    env.pop("SPARK_REMOTE", None)
    if SERVER is not None:
        SERVER.begin()
        env["SPARK_REMOTE"] = SERVER.state.url
    return subprocess.Popen([sys.executable, "-m", "live"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen[Any], timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(10)


class MemorySampler(threading.Thread):
    """PSS of the live process tree every `every` seconds, for the memory timeline."""

    def __init__(self, pid: int, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.monotonic(), tree_memory_mb(self.pid)[1]))
            self.halt.wait(self.every)


class Poller(threading.Thread):
    """Samples committed ids, ids counted by the live query and by the naive loop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, dict[str, int], dict[str, int], dict[str, int]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with connect(self.url, autocommit=True) as conn:
            while not self.halt.is_set():
                now = time.monotonic()
                committed: dict[str, int] = dict(conn.execute(
                    "SELECT s, (SELECT max(trade_id) FROM trades WHERE symbol = s) "
                    "FROM unnest(%s::text[]) AS s", (SYMBOLS,)).fetchall())
                counted: dict[str, int] = dict(conn.execute(
                    "SELECT symbol, max(next_id) - 1 FROM live_coverage GROUP BY symbol"
                ).fetchall())
                naive: dict[str, int] = dict(conn.execute(
                    "SELECT symbol, max(last_id) FROM naive_bars GROUP BY symbol").fetchall())
                self.samples.append((now, committed, counted, naive))
                self.halt.wait(POLL_SECONDS)


def freshness(samples: list[tuple[float, dict[str, int], dict[str, int], dict[str, int]]],
              which: int, after: float) -> list[float]:
    """For every sample after `after`: seconds until the counted id reached its committed id."""
    return [seconds for _at, seconds in timed_freshness(samples, which, after)]


def timed_freshness(samples: list[tuple[float, dict[str, int], dict[str, int], dict[str, int]]],
                    which: int, after: float) -> list[tuple[float, float]]:
    """(sample time, freshness) for every sample after `after` that was counted."""
    out = []
    for index, (at, committed, *_rest) in enumerate(samples):
        if at < after:
            continue
        for symbol, target in committed.items():
            if target is None:
                continue
            for later in samples[index:]:
                ids = later[which]
                assert isinstance(ids, dict)
                done = ids.get(symbol)
                if done is not None and done >= target:
                    out.append((at, later[0] - at))
                    break
    return out


def naive_loop(url: str, halt: threading.Event, durations: list[tuple[float, int]]) -> None:
    with connect(url, autocommit=True) as conn:
        while not halt.is_set():
            started = time.monotonic()
            conn.execute(NAIVE_SQL)
            rows = conn.execute("SELECT coalesce(sum(trade_count), 0) FROM naive_bars"
                                ).fetchone()
            durations.append((time.monotonic() - started, int(rows[0]) if rows else 0))
            halt.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {p50:.2f} s, p99 {p99:.2f} s ({len(ordered)} samples)"


def counted_trades(url: str) -> int:
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(trade_count), 0) FROM bars_1m").fetchone()
    return int(row[0]) if row else 0


def paced_run(url: str, rate: float, seconds: float, work: Path,
              day_trades: int, naive_beside: bool = True) -> dict[str, Any]:
    log = work / "live-paced.log"
    if day_trades:
        preload(url, day_trades, DAY_SYMBOLS)
    poller = Poller(url)
    halt = threading.Event()
    naive_durations: list[tuple[float, int]] = []
    with running_feed(symbols=SYMBOLS, rate=rate, history_limit=2_000_000) as feed:
        env = {**os.environ, "DATABASE_URL": url, "BINANCE_WS_URL": feed.ws_url,
               "BINANCE_REST_URL": feed.rest_url, "SYMBOLS": ",".join(SYMBOLS),
               "LOG_LEVEL": "WARNING"}
        streamer = subprocess.Popen([sys.executable, "stream.py"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        live = start_live(url, work / "checkpoint-paced", log, [*SYMBOLS, *DAY_SYMBOLS])
        naive = threading.Thread(target=naive_loop, args=(url, halt, naive_durations),
                                 daemon=True)
        memory = MemorySampler(live.pid)
        poller.start()
        if naive_beside:
            naive.start()
        try:
            # warm-up: the JVM's start and the first (large) micro-batch are not freshness
            deadline = time.monotonic() + 240
            while ("micro-batch 2:" not in sink_lines(log)
                   or counted_trades(url) < day_trades):
                if live.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("live query did not start:\n" + sink_lines(log)[-3000:])
                time.sleep(0.5)
            measured_from = time.monotonic()
            memory.start()
            time.sleep(seconds)
            measured_to = time.monotonic()
            rss = tree_rss_mb(live.pid)
            server_rss = tree_rss_mb(SERVER.state.pid) if SERVER is not None else 0.0
            time.sleep(5)  # let the last samples be counted
        finally:
            poller.halt.set()
            memory.halt.set()
            halt.set()
            if naive.is_alive():
                naive.join(120)  # its pass in flight finishes before the database is dropped
            poller.join(10)
            stop(streamer)
            code = stop(live)
    samples = [s for s in poller.samples if s[0] <= measured_to + 5]
    return {
        "live": freshness(samples, 2, measured_from),
        "naive": freshness(samples, 3, measured_from),
        "naive_durations": naive_durations,
        "rss_mb": rss,
        "server_rss_mb": server_rss,
        "exit": code,
        "window": measured_to - measured_from,
        "timeline": timeline(samples, memory.samples, measured_from, measured_to),
        "pss_peak_mb": max((mb for _t, mb in memory.samples), default=float("nan")),
    }


def timeline(samples: list[tuple[float, dict[str, int], dict[str, int], dict[str, int]]],
             memory: list[tuple[float, float]], start: float, end: float,
             ) -> list[tuple[float, float, float, list[float]]]:
    """Per slice of the measured window: (minutes in, RSS at its end, its max, freshness).

    Ten slices, at least one minute each."""
    width = max(60.0, (end - start) / 10)
    timed = timed_freshness(samples, 2, start)
    rows = []
    at = start
    while at < end - 1:
        upto = min(end, at + width)
        rss = [mb for t, mb in memory if at <= t <= upto]
        fresh = [seconds for t, seconds in timed if at <= t < upto]
        rows.append(((upto - start) / 60, rss[-1] if rss else float("nan"),
                     max(rss, default=float("nan")), fresh))
        at = upto
    return rows


def preload(url: str, trades: int, symbols: list[str] = SYMBOLS) -> None:
    """`trades` trades of `symbols` in the last hour of today (UTC), via one COPY per symbol.

    Just after midnight the span is shorter: the trades stay in the current day (its partition
    made here), as earlier trades of the day that the naive loop re-reads."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(now - timedelta(hours=1), midnight)
    with connect(url) as conn, conn.cursor() as cur:
        ensure_partitions(conn, [now.date()])
        for symbol in symbols:
            count = trades // len(symbols)
            with cur.copy("COPY trades (symbol, trade_id, price, quantity, trade_time,"
                          " is_buyer_maker) FROM STDIN") as copy:
                step = (now - start) / count
                for i in range(count):
                    copy.write_row((symbol, 1_000_000 + i, f"{60000 + (i % 5000) / 100:.8f}",
                                    f"0.{(i % 9999) + 1:08d}", start + step * i, i % 2 == 0))


BATCH_LINE = re.compile(r"micro-batch (\d+): (\d+) trade\(s\) .* in ([\d.]+) s")


def catchup_run(url: str, trades: int, work: Path) -> dict[str, Any]:
    """Preloaded trades, a fresh query: its micro-batches' trades per second of processing
    (from its log), the first (cold: Python workers, JIT) apart from the rest."""
    preload(url, trades)
    log = work / "live-catchup.log"
    live = start_live(url, work / "checkpoint-catchup", log)
    started = time.monotonic()
    try:
        deadline = started + 900
        with connect(url, autocommit=True) as conn:
            while live.poll() is None and time.monotonic() < deadline:
                row = conn.execute("SELECT coalesce(sum(trade_count), 0) FROM bars_1m"
                                   ).fetchone()
                if row and int(row[0]) >= trades:
                    break
                time.sleep(0.5)
        wall = time.monotonic() - started
        rss = tree_rss_mb(live.pid)
        pss = tree_memory_mb(live.pid)[1]
        server_rss = tree_rss_mb(SERVER.state.pid) if SERVER is not None else 0.0
    finally:
        stop(live)
    batches = [(int(m.group(2)), float(m.group(3)))
               for m in BATCH_LINE.finditer(sink_lines(log))]
    warm = batches[1:] or batches
    return {
        "trades": sum(n for n, _ in batches),
        "batches": batches,
        "cold_rate": batches[0][0] / batches[0][1] if batches else 0.0,
        "warm_rate": sum(n for n, _ in warm) / sum(s for _, s in warm) if warm else 0.0,
        "wall": wall,
        "rss_mb": rss,
        "pss_mb": pss,
        "server_rss_mb": server_rss,
    }


def paced_report(args: argparse.Namespace, work: Path) -> None:
    with fresh_database() as url:
        paced = paced_run(url, args.rate, args.seconds, work, args.day_trades,
                          naive_beside=not args.no_naive)
    print(f"\nfeed at {args.rate:,.0f} trades/s through stream.py, "
          f"{paced['window']:.0f} s measured after warm-up, {args.day_trades:,} earlier trades "
          "of the day preloaded (two more symbols, counted by both)")
    print(f"  live query  commit -> bars_1m: {quantiles(paced['live'])}")
    print(f"  naive loop  commit -> its bars: {quantiles(paced['naive'])}")
    if paced["naive_durations"]:
        seconds, rows = paced["naive_durations"][-1]
        per_million = seconds / rows * 1e6 if rows else float("nan")
        print(f"  naive pass: {seconds:.2f} s over {rows:,} trades of the day "
              f"({per_million:.2f} s per million trades; a day at {args.rate:,.0f}/s holds "
              f"{args.rate * 86400 / 1e6:,.0f} M)")
    print(f"  live process tree peak RSS: {paced['rss_mb']:,.0f} MB{server_rss(paced)}, "
          f"exit {paced['exit']}")
    print(f"  live process tree PSS: peak {paced['pss_peak_mb']:,.0f} MB over the run "
          "(sampled every 10 s; the Python workers' shared pages split between them)")
    print("  over the run (PSS of the live process tree: driver, JVM, Python daemon and workers):")
    print(f"  {'minute':>7} {'PSS now MB':>11} {'slice max MB':>13}  freshness in the slice")
    for minute, now, peak, fresh in paced["timeline"]:
        print(f"  {minute:7.1f} {now:11,.0f} {peak:13,.0f}  {quantiles(fresh)}")


def server_rss(run: dict[str, Any]) -> str:
    if SERVER is None:
        return ""
    return f" (the client; the Spark Connect server's tree {run['server_rss_mb']:,.0f} MB)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--catchup-trades", type=int, default=3_000_000)
    parser.add_argument("--no-paced", action="store_true", help="only the catch-up run")
    parser.add_argument("--day-trades", type=int, default=4_000_000,
                        help="earlier trades of the day preloaded before the paced run")
    parser.add_argument("--no-naive", action="store_true",
                        help="no naive loop beside the live query (for long memory runs: its "
                             "pass grows with the day and would take a core)")
    parser.add_argument("--no-catchup", action="store_true", help="only the paced run")
    parser.add_argument("--remote", action="store_true",
                        help="the live query through a Spark Connect server started for the run")
    args = parser.parse_args(argv)
    global SERVER
    work = ROOT / ".local" / "bench-live" / uuid.uuid4().hex[:8]
    work.mkdir(parents=True)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"({os.cpu_count()} cores)")
    if args.remote:
        SERVER = Server(work / "spark-connect")
        print(f"the live query through the Spark Connect server {SERVER.state.url} "
              f"(master {SERVER.state.master})")
    try:
        if not args.no_paced:
            paced_report(args, work)
        if not args.no_catchup:
            with fresh_database() as url:
                catch = catchup_run(url, args.catchup_trades, work)
    finally:
        if SERVER is not None:
            SERVER.stop()
    if args.no_catchup:
        load = os.getloadavg()
        print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        return 0
    print(f"\ncatch-up: {catch['trades']:,} preloaded trades in {len(catch['batches'])} "
          f"micro-batch(es), {catch['wall']:.0f} s from process start "
          f"({'no JVM start: the server was already up' if SERVER else 'JVM included'})")
    first = "first (the server warm from the paced run)" if SERVER and not args.no_paced else (
        "first (cold)")
    print(f"  {first} micro-batch {catch['cold_rate']:,.0f} trades/s; later ones "
          f"{catch['warm_rate']:,.0f} trades/s of processing; peak RSS "
          f"{catch['rss_mb']:,.0f} MB (summed per process), PSS at the end "
          f"{catch['pss_mb']:,.0f} MB{server_rss(catch)}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
