"""Binance's connection rules on the replay feed: pings, pong timeout, lifetime with
serverShutdown, stream limits, and the planned shutdown on SIGTERM (fast mode)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from binance_etl.replay.testing import FeedHandle, running_feed
from tests.plugins.replay import read_until_closed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def strict_feed() -> Iterator[FeedHandle]:
    with running_feed(symbols=["BTCUSDT", "ETHUSDT"], rate=200, ping_interval=0.25,
                      pong_timeout=1.0, max_lifetime=3.0, shutdown_notice=1.0,
                      max_streams=3) as feed:
        yield feed


class Recorder(WSListener):  # type: ignore[misc]
    """A picows client that records pings and answers them only when told to."""

    def __init__(self, answer_pings: bool) -> None:
        self.answer_pings = answer_pings
        self.pings = 0
        self.trades = 0
        self.close_code: int | None = None
        self.disconnected_at: float | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.PING:
            self.pings += 1
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.TEXT:
            self.trades += 1
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected_at = time.monotonic()


def test_pings_and_pong_timeout(strict_feed: FeedHandle) -> None:
    url = strict_feed.ws_url + "/ws/btcusdt@trade"

    async def run() -> tuple[Recorder, Recorder, float]:
        started = time.monotonic()
        good, silent = Recorder(True), Recorder(False)
        good_transport, _ = await ws_connect(lambda: good, url, enable_auto_pong=False)
        await ws_connect(lambda: silent, url, enable_auto_pong=False)
        await asyncio.sleep(2.2)
        assert good.disconnected_at is None  # answering pings keeps it alive
        good_transport.disconnect()
        return good, silent, started

    good, silent, started = asyncio.run(run())
    assert good.pings >= 5
    assert good.trades > 100
    assert silent.close_code == 1008
    assert silent.disconnected_at is not None
    assert 1.0 < silent.disconnected_at - started < 2.5


def test_lifetime_ends_with_server_shutdown_then_close(strict_feed: FeedHandle) -> None:
    async def run() -> tuple[list[tuple[float, Any]], ConnectionClosed, float]:
        started = time.monotonic()
        async with connect(strict_feed.ws_url + "/stream?streams=ethusdt@trade",
                           max_queue=None) as ws:
            messages, closed = await read_until_closed(ws, 8)
        return [(at, orjson.loads(m)) for at, m in messages], closed, time.monotonic() - started

    received, closed, ended = asyncio.run(run())
    notices = [(at, m) for at, m in received if m.get("e") == "serverShutdown"]
    assert len(notices) == 1
    notice_at, notice = notices[0]
    assert set(notice) == {"e", "E"}
    assert 1.5 < notice_at < 2.8  # lifetime 3 s, notice 1 s before
    assert any(at > notice_at and "stream" in m for at, m in received)  # trades keep coming
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert 2.8 < ended < 5.0


def test_stream_limits(strict_feed: FeedHandle) -> None:
    four = "/".join(f"s{n}usdt@trade" for n in range(4))

    async def run() -> Any:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(strict_feed.ws_url + "/stream?streams=" + four):
                pass
        assert rejected.value.response.status_code == 400
        async with connect(strict_feed.ws_url + "/ws/a@trade/b@trade", max_queue=None) as ws:
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["c@trade"],
                                        "id": 1}).decode())
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["d@trade"],
                                        "id": 2}).decode())
            async with asyncio.timeout(5):
                return [orjson.loads(await ws.recv()) for _ in range(2)]

    first, second = asyncio.run(run())
    assert first == {"result": None, "id": 1}
    assert (second["code"], second["id"]) == (2, 2)
    assert "too many streams" in second["msg"]


def test_fast_mode_and_planned_shutdown(start_feed: Callable[..., FeedHandle]) -> None:
    feed = start_feed(symbols=["BTCUSDT", "1000PEPEUSDT"], rate=0, max_trades=3000)
    assert all(s["produced"] == 0 for s in feed.stats()["symbols"].values())  # nobody listens

    async def run() -> tuple[list[Any], ConnectionClosed]:
        async with connect(feed.ws_url + "/stream?streams=btcusdt@trade/1000pepeusdt@trade",
                           max_queue=None) as ws:
            async with asyncio.timeout(20):
                trades = [orjson.loads(await ws.recv()) for _ in range(6000)]
            assert feed.stats()["done"]
            feed.process.send_signal(signal.SIGTERM)
            rest, closed = await read_until_closed(ws)
            return trades + [orjson.loads(m) for _, m in rest], closed

    messages, closed = asyncio.run(run())
    by_symbol: dict[str, list[int]] = {}
    for message in messages[:6000]:
        by_symbol.setdefault(message["data"]["s"], []).append(message["data"]["t"])
    assert by_symbol == {"BTCUSDT": list(range(1, 3001)), "1000PEPEUSDT": list(range(1, 3001))}
    assert [m["e"] for m in messages[6000:]] == ["serverShutdown"]
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert feed.process.wait(timeout=10) == 0
