"""The replay feed as a client sees it: streams, control messages and REST, on one live feed.

The feed runs in a subprocess (`replay_feed` fixture); the client is the `websockets` library."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from binance_etl.replay.testing import FeedHandle
from tests.plugins.replay import read_until_closed

pytestmark = pytest.mark.integration
TIMEOUT = 10.0


async def _frames(ws: ClientConnection, count: int) -> list[Any]:
    async with asyncio.timeout(TIMEOUT):
        return [orjson.loads(await ws.recv()) for _ in range(count)]


async def _reply(ws: ClientConnection, request: dict[str, Any] | str) -> Any:
    """Send a control message; skip trade frames until the reply (it has no "e"/"stream")."""
    await ws.send(request if isinstance(request, str) else orjson.dumps(request).decode())
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = orjson.loads(await ws.recv())
            if "e" not in message and "stream" not in message:
                return message


def connect(url: str) -> ws_connect:
    """A websockets client that keeps reading while it closes: with flow control on, a client
    that stopped reading with frames queued waits `close_timeout` for a close frame it never
    reads."""
    return ws_connect(url, max_queue=None, close_timeout=2)


def _trade_key(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["s"], event["t"], Decimal(event["p"]), Decimal(event["q"]), event["T"],
            event["m"])


def test_raw_stream_delivers_consecutive_binance_trades(replay_feed: FeedHandle) -> None:
    async def run() -> list[Any]:
        async with connect(replay_feed.ws_url + "/ws/btcusdt@trade") as ws:
            return await _frames(ws, 60)

    events = asyncio.run(run())
    assert all(list(e) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"] for e in events)
    assert {e["s"] for e in events} == {"BTCUSDT"}
    ids = [e["t"] for e in events]
    assert ids == list(range(ids[0], ids[0] + 60))
    assert all(e["E"] >= e["T"] for e in events)
    # Exactly what the market says it produced (and what REST serves).
    produced = {t.trade_id: t for t in replay_feed.trades("BTCUSDT")}
    for event in events:
        trade = produced[event["t"]]
        assert _trade_key(event) == (trade.symbol, trade.trade_id, trade.price, trade.quantity,
                                     trade.time_ms, trade.is_buyer_maker)


def test_combined_stream_fan_out_and_microseconds(replay_feed: FeedHandle) -> None:
    url = replay_feed.ws_url + "/stream?streams=btcusdt@trade/ethusdt@trade"

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        async with connect(url) as first, connect(url) as second, \
                connect(url + "&timeUnit=MICROSECOND") as micro:
            a, b, c = await asyncio.gather(_frames(first, 200), _frames(second, 200),
                                           _frames(micro, 20))
            return a, b, c

    first, second, micro = asyncio.run(run())
    assert {f["stream"] for f in first} == {"btcusdt@trade", "ethusdt@trade"}
    assert all(f["stream"] == f["data"]["s"].lower() + "@trade" for f in first)
    seen_first = {(f["data"]["s"], f["data"]["t"]): _trade_key(f["data"]) for f in first}
    seen_second = {(f["data"]["s"], f["data"]["t"]): _trade_key(f["data"]) for f in second}
    common = seen_first.keys() & seen_second.keys()
    assert len(common) > 100  # both clients were sent the same trades
    assert all(seen_first[key] == seen_second[key] for key in common)
    assert all(f["data"]["T"] > 10**15 for f in micro)  # microseconds since the epoch


def test_subscribe_unsubscribe_and_list(replay_feed: FeedHandle) -> None:
    async def run() -> None:
        async with connect(replay_feed.ws_url + "/ws") as ws:
            assert await _reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
                "result": [], "id": 1}
            assert await _reply(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@trade"],
                                     "id": 2}) == {"result": None, "id": 2}
            trade = (await _frames(ws, 1))[0]
            assert trade["s"] == "ETHUSDT"
            assert await _reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {
                "result": ["ethusdt@trade"], "id": 3}
            assert await _reply(ws, {"method": "SET_PROPERTY", "params": ["combined", True],
                                     "id": 4}) == {"result": None, "id": 4}
            wrapped = (await _frames(ws, 2))[-1]
            assert wrapped["stream"] == "ethusdt@trade"
            await asyncio.sleep(1.0)  # stay under 5 messages a second
            assert await _reply(ws, {"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"],
                                     "id": 5}) == {"result": None, "id": 5}
            assert await _reply(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 6}) == {
                "result": [], "id": 6}

    asyncio.run(run())


def test_bad_control_messages_get_binance_errors(replay_feed: FeedHandle) -> None:
    async def run() -> list[Any]:
        async with connect(replay_feed.ws_url + "/ws") as ws:
            replies = [await _reply(ws, "{not json"),
                       await _reply(ws, {"method": "FETCH", "id": 7}),
                       await _reply(ws, {"method": "SUBSCRIBE", "params": [], "id": -1})]
            await asyncio.sleep(1.0)
            replies.append(await _reply(ws, {"method": "GET_PROPERTY", "params": ["colour"],
                                             "id": 8}))
            replies.append(await _reply(ws, {"method": "SET_PROPERTY",
                                             "params": ["combined", "yes"], "id": 9}))
            return replies

    replies = asyncio.run(run())
    assert [(r["code"], r["id"]) for r in replies] == [(3, None), (2, 7), (2, None), (0, 8),
                                                       (1, 9)]
    assert replies[1]["msg"].startswith("Invalid request: unknown variant")


def test_too_many_control_messages_drop_the_connection(replay_feed: FeedHandle) -> None:
    async def run() -> None:
        async with connect(replay_feed.ws_url + "/ws") as ws:
            for number in range(8):
                await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": number}).decode())
            _, closed = await read_until_closed(ws)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1008

    asyncio.run(run())


def test_rest_endpoints_and_weights(replay_feed: FeedHandle) -> None:
    with httpx.Client(base_url=replay_feed.rest_url, timeout=TIMEOUT,
                      headers={"X-Forwarded-For": "10.0.0.7"}) as client:
        assert client.get("/api/v3/ping").json() == {}
        server_time = client.get("/api/v3/time")
        assert server_time.json()["serverTime"] > 1_700_000_000_000
        assert server_time.headers["X-MBX-USED-WEIGHT-1M"] == "2"
        info = client.get("/api/v3/exchangeInfo", params={"symbols": '["BTCUSDT","ETHUSDT"]'})
        assert [(s["symbol"], s["baseAsset"], s["quoteAsset"], s["status"])
                for s in info.json()["symbols"]] == [("BTCUSDT", "BTC", "USDT", "TRADING"),
                                                     ("ETHUSDT", "ETH", "USDT", "TRADING")]
        assert info.headers["X-MBX-USED-WEIGHT-1M"] == "22"
        invalid = client.get("/api/v3/exchangeInfo", params={"symbol": "FOOBAR"})
        assert (invalid.status_code, invalid.json()) == (400, {"code": -1121,
                                                              "msg": "Invalid symbol."})
        recent = client.get("/api/v3/trades", params={"symbol": "ETHUSDT", "limit": 5}).json()
        assert len(recent) == 5
        history = client.get("/api/v3/historicalTrades",
                             params={"symbol": "ETHUSDT", "fromId": 3, "limit": 4})
        assert history.headers["X-MBX-USED-WEIGHT-1M"] == str(2 + 20 + 20 + 25 + 25)
        items = history.json()
        assert [i["id"] for i in items] == [3, 4, 5, 6]
        assert set(items[0]) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker",
                                 "isBestMatch"}
        market = {t.trade_id: t for t in replay_feed.trades("ETHUSDT")}
        for item in items:
            trade = market[item["id"]]
            assert (Decimal(item["price"]), Decimal(item["qty"]), item["time"]) == (
                trade.price, trade.quantity, trade.time_ms)
        absent = client.get("/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-09-10.zip")
        assert absent.status_code == 404  # no --dumps-dir


def test_manual_drop_cuts_every_connection(replay_feed: FeedHandle) -> None:
    async def run() -> ConnectionClosed:
        async with connect(replay_feed.ws_url + "/ws/btcusdt@trade") as ws:
            await ws.recv()
            assert await asyncio.to_thread(replay_feed.drop_connections) == 1
            _, closed = await read_until_closed(ws, 5)
            return closed

    assert asyncio.run(run()).rcvd is None  # no close frame: as if the network failed


def test_trades_helper_pages_through_everything(replay_feed: FeedHandle,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    replay_feed.wait_produced("ETHUSDT", 1000)
    monkeypatch.setattr("binance_etl.replay.testing.PAGE", 300)
    paged = replay_feed.trades("ETHUSDT")
    whole = httpx.get(f"{replay_feed.rest_url}/_replay/trades",
                      params={"symbol": "ETHUSDT", "limit": 1_000_000}).json()
    assert len(whole) >= len(paged)  # the market kept trading after the helper read it
    assert [(i["id"], i["price"], i["qty"]) for i in whole[: len(paged)]] == [
        (t.trade_id, str(t.price), str(t.quantity)) for t in paged]
    assert [t.trade_id for t in paged] == list(range(1, len(paged) + 1))
    assert len(paged) >= 1000
