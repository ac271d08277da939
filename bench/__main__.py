"""`make bench`: every benchmark, one after the other, each in its own process.

Each benchmark prints its own table of figures and ratios; this runner only sequences them and
reports which ones failed. `python -m bench feed ingest` runs a subset.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES = {
    "feed": "the replay feed alone (frames/s it can push)",
    "ingest": "stream.py: replay feed -> committed rows, lag, RSS, vs one INSERT per trade",
    "backfill": "daily dump -> raw trades, vs PostgreSQL's own COPY",
    "etl": "the daily batch on a 10M-trade day, vs COPY TO and GROUP BY in PostgreSQL",
    "dashboard": "GET /api/bars under 20 clients; first candles and live redraw in Chromium",
    "live": "python -m live: commit -> bars_1m freshness at 5,000 trades/s, catch-up rate, RSS",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench {name}: {BENCHES[name]}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False)
        print(
            f"=== bench {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s"
        )
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
