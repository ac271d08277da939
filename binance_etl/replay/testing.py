"""`running_feed(**options)`: the replay feed in a subprocess, for tests and benchmarks.

    with running_feed(symbols=["BTCUSDT"], rate=500, drop_after_frames=300) as feed:
        run_the_client(feed.ws_url, feed.rest_url)
        feed.pause()                          # the market stops producing
        expected = feed.trades("BTCUSDT")     # every trade it produced, in id order

The options are `binance_etl.replay.options.FeedOptions` fields; the feed is stopped
(SIGTERM, then kill) when the block ends.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from binance_etl.replay.market import Trade
from binance_etl.replay.options import FeedOptions, to_argv

START_TIMEOUT_S = 20.0
PAGE = 100_000


@dataclass
class FeedHandle:
    """A running feed: its URLs and its test controls (`/_replay/*`)."""

    ws_url: str
    rest_url: str
    process: subprocess.Popen[str]

    @property
    def data_url(self) -> str:
        return self.rest_url

    def _get(self, path: str, **params: str | int) -> Any:
        response = httpx.get(f"{self.rest_url}{path}", params=params, timeout=30.0)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._get("/_replay/stats")
        return stats

    def pause(self) -> dict[str, Any]:
        """Stop producing; returns the stats at that moment (what was produced, final)."""
        stats: dict[str, Any] = self._get("/_replay/pause")
        return stats

    def resume(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._get("/_replay/resume")
        return stats

    def drop_connections(self) -> int:
        """Cut every WebSocket connection now (no close frame)."""
        return int(self._get("/_replay/drop")["dropped"])

    def trades(self, symbol: str) -> list[Trade]:
        """Every trade the market produced for `symbol` (that it still keeps), in id order."""
        out: list[Trade] = []
        from_id: int | None = None
        while True:
            params: dict[str, str | int] = {"symbol": symbol, "limit": PAGE}
            if from_id is not None:
                params["fromId"] = from_id
            page = self._get("/_replay/trades", **params)
            out.extend(Trade(symbol, item["id"], Decimal(item["price"]), Decimal(item["qty"]),
                             item["time"], item["isBuyerMaker"]) for item in page)
            if len(page) < PAGE:
                return out
            from_id = page[-1]["id"] + 1

    def wait_until(self, predicate: Any, timeout: float = 10.0, interval: float = 0.05
                   ) -> dict[str, Any]:
        """Poll the stats until `predicate(stats)` is true; returns those stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay feed never reached the condition; last stats {stats}")
            time.sleep(interval)

    def wait_produced(self, symbol: str, count: int, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_until(lambda s: s["symbols"][symbol]["produced"] >= count, timeout)


def _read_url_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replay feed exited with code {process.returncode} before "
                               "listening (see its stderr above)")
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if line.startswith("BINANCE_WS_URL="):
                return line
    raise TimeoutError(f"replay feed did not start within {timeout}s")


@contextmanager
def running_feed(**options: Any) -> Iterator[FeedHandle]:
    """Start `python -m binance_etl.replay` with these FeedOptions in a subprocess; stop it
    afterwards."""
    argv = to_argv(FeedOptions(**options))
    env = dict(os.environ)
    env.setdefault("LOG_LEVEL", "WARNING")
    process = subprocess.Popen([sys.executable, "-m", "binance_etl.replay", *argv], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = _read_url_line(process, START_TIMEOUT_S)
        urls = dict(part.split("=", 1) for part in line.split())
        yield FeedHandle(urls["BINANCE_WS_URL"], urls["BINANCE_REST_URL"], process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
