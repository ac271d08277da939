"""Pytest fixtures for the ingest area (registered in tests/conftest.py).

- `run_streamer(**config)`: a real `Streamer` on its own event loop in a thread, against the
  replay feed and PostgreSQL; the test stops it (like a signal would) and gets its Summary.
- `dedicated_pg`: a LocalPostgres of the test's own (for stop/restart), never the shared one.
- `stored_trades` / `market_trades`: the two sides the ingest tests compare, in one shape.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from binance_etl.db import connect
from binance_etl.ingest.stats import Summary
from binance_etl.ingest.streamer import Streamer, StreamerConfig
from binance_etl.ingest.trade import datetime_to_ms
from binance_etl.localpg import LocalPostgres
from binance_etl.schema import migrate

# (trade_id, price, quantity, trade time in ms, is_buyer_maker)
Row = tuple[int, Decimal, Decimal, int, bool]


def stored_trades(url: str, symbol: str) -> list[Row]:
    """Every stored trade of `symbol`, in id order (duplicates, if any, kept)."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT trade_id, price, quantity, trade_time, is_buyer_maker FROM trades "
            "WHERE symbol = %s ORDER BY trade_id",
            (symbol,),
        ).fetchall()
    return [(r[0], r[1], r[2], datetime_to_ms(r[3]), r[4]) for r in rows]


def market_trades(feed: Any, symbol: str) -> list[Row]:
    """Every trade the replay market produced for `symbol`, in id order."""
    return [(t.trade_id, t.price, t.quantity, t.time_ms, t.is_buyer_maker)
            for t in feed.trades(symbol)]


class StreamerThread:
    """A Streamer running in a thread with its own event loop."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.streamer = Streamer(config)
        self.summary: Summary | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="streamer", daemon=True)

    def _main(self) -> None:
        async def run() -> Summary:
            self._loop = asyncio.get_running_loop()
            self._started.set()
            return await self.streamer.run(install_signals=False)

        try:
            self.summary = asyncio.run(run())
        except BaseException as error:  # handed to the test thread by stop()
            self.error = error
        finally:
            self._started.set()

    def start(self) -> StreamerThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def caught_up(self, last_ids: dict[str, int]) -> bool:
        streamer = self.streamer
        for symbol, last_id in last_ids.items():
            state = streamer.gaps[symbol]
            if state.last_id != last_id or state.missing:
                return False
        return streamer.writer.pending == 0 and not streamer._chunk.trades

    def wait_caught_up(self, last_ids: dict[str, int], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.caught_up(last_ids):
            if self.error is not None or not self._thread.is_alive():
                raise AssertionError(f"streamer ended early: {self.error!r}")
            if time.monotonic() > deadline:
                states = {s: (g.last_id, g.missing[:3]) for s, g in self.streamer.gaps.items()}
                raise AssertionError(f"not caught up with {last_ids}: {states}, "
                                     f"pending {self.streamer.writer.pending}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> Summary:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.streamer.request_stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("streamer did not stop in time")
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


@pytest.fixture
def run_streamer() -> Iterator[Callable[..., StreamerThread]]:
    """Start streamers with StreamerConfig fields; any still running are stopped at the end."""
    running: list[StreamerThread] = []

    def start(**config: Any) -> StreamerThread:
        config.setdefault("stats_interval", 1.0)
        runner = StreamerThread(StreamerConfig(**config)).start()
        running.append(runner)
        return runner

    yield start
    for runner in running:
        if runner._thread.is_alive():
            runner.stop()


@dataclass
class DedicatedPostgres:
    server: LocalPostgres
    url: str  # a migrated database on it


@pytest.fixture
def dedicated_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedPostgres]:
    """A PostgreSQL server of this test alone (so it can be restarted), removed afterwards."""
    server = LocalPostgres(tmp_path_factory.mktemp("ingest-pg"))
    url = server.ensure_running()
    try:
        with connect(url, autocommit=True) as conn:
            migrate(conn)
        yield DedicatedPostgres(server, url)
    finally:
        base = server.layout().base
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture
def ingest_db(pg_conn: psycopg.Connection, pg_url: str) -> str:
    """The session test database with `trades` emptied: its URL."""
    return pg_url
