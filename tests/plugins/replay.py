"""Pytest fixtures for the replay area (registered in tests/conftest.py).

`replay_feed` is a live feed (BTCUSDT, ETHUSDT at 400 trades/s) shared by a module's tests;
`start_feed(**options)` starts a feed with its own options (faults, limits) for one test.
Both run the real server in a subprocess (`binance_etl.replay.testing.running_feed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from binance_etl.replay.testing import FeedHandle, running_feed


@pytest.fixture(scope="module")
def replay_feed() -> Iterator[FeedHandle]:
    with running_feed(symbols=["BTCUSDT", "ETHUSDT"], rate=400, seed=7) as feed:
        yield feed


@pytest.fixture
def start_feed() -> Iterator[Callable[..., FeedHandle]]:
    """A factory: `feed = start_feed(drop_after_frames=100)`; every feed stops after the test."""
    with ExitStack() as stack:

        def start(**options: Any) -> FeedHandle:
            return stack.enter_context(running_feed(**options))

        yield start


async def read_until_closed(ws: ClientConnection, seconds: float = 10.0
                            ) -> tuple[list[tuple[float, str]], ConnectionClosed]:
    """Every text message with its arrival time (s from the call) until the connection ends,
    and how it ended; fails the test when it is still open after `seconds`."""
    messages: list[tuple[float, str]] = []
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await ws.recv()
                messages.append((time.monotonic() - started, str(message)))
    except ConnectionClosed as closed:
        return messages, closed
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds}s")
