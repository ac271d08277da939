"""Fault injection on the replay feed: dropped connections, duplicated and corrupt frames,
silence, REST 429/418 — and trades missed through any of them stay available from REST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from binance_etl.replay.generator import SymbolGenerator
from binance_etl.replay.market import Trade
from binance_etl.replay.testing import FeedHandle, running_feed
from binance_etl.replay.tradefile import read_trade_file, write_trade_file
from tests.plugins.replay import read_until_closed

pytestmark = pytest.mark.integration


async def _read_until_closed(url: str) -> tuple[list[tuple[float, str]], ConnectionClosed]:
    """Every text frame with its arrival time (s since connecting), and how it ended."""
    async with connect(url, max_queue=None, ping_interval=None) as ws:
        return await read_until_closed(ws)


def _trade_id(text: str) -> int | None:
    """The trade id of a well-formed event, None for a spoiled one."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("t"), int):
        return None
    if not isinstance(event.get("p"), str) or not event["p"].replace(".", "").isdigit():
        return None
    return int(event["t"])


def test_drop_after_frames_with_duplicates_and_corruption(
        start_feed: Callable[..., FeedHandle]) -> None:
    feed = start_feed(symbols=["BTCUSDT"], rate=1000, seed=3, drop_after_frames=300,
                      duplicate_fraction=0.1, corrupt_fraction=0.1)
    frames, closed = asyncio.run(_read_until_closed(feed.ws_url + "/ws/btcusdt@trade"))
    assert len(frames) == 300  # exactly N frames, then the TCP connection goes
    assert closed.rcvd is None  # no close frame: a network failure, not a goodbye
    ids = [_trade_id(text) for _, text in frames]
    good = [i for i in ids if i is not None]
    assert 10 <= ids.count(None) <= 60  # corrupt frames
    assert 10 <= len(good) - len(set(good)) <= 60  # duplicates
    missing = set(range(good[0], good[-1] + 1)) - set(good)
    assert missing, "corrupt frames hide trades"
    # What the stream lost, REST still has.
    history = httpx.get(f"{feed.rest_url}/api/v3/historicalTrades",
                        params={"symbol": "BTCUSDT", "fromId": min(missing), "limit": 1000})
    assert missing <= {item["id"] for item in history.json()}
    # A new connection gets its own 300 frames.
    again, _ = asyncio.run(_read_until_closed(feed.ws_url + "/ws/btcusdt@trade"))
    assert len(again) == 300


def test_silence_then_time_based_drop(start_feed: Callable[..., FeedHandle]) -> None:
    feed = start_feed(symbols=["ETHUSDT"], rate=200, silent_after=0.5, silent_for=1.0,
                      drop_after_seconds=2.0)
    frames, closed = asyncio.run(_read_until_closed(feed.ws_url + "/ws/ethusdt@trade"))
    assert closed.rcvd is None
    assert 1.5 < frames[-1][0] < 3.0
    gaps = [(b[0] - a[0], _trade_id(a[1]), _trade_id(b[1]))
            for a, b in zip(frames, frames[1:], strict=False)]
    longest, before, after = max(gaps, key=lambda gap: gap[0])
    assert longest > 0.8  # socket open, nothing sent
    assert before is not None
    assert after is not None
    assert after - before > 80
    assert sorted(g[0] for g in gaps)[-2] < 0.5  # only one silence


DUMP_NAME = "BTCUSDT-trades-2025-09-10.zip"


def _recorded_market() -> list[Trade]:
    start, end = 1_757_462_400_000, 1_757_462_460_000
    return (SymbolGenerator("BTCUSDT", 11).generate(250, start, end)
            + SymbolGenerator("ETHUSDT", 11).generate(250, start, end))


@pytest.fixture(scope="module")
def recorded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recorded")


@pytest.fixture(scope="module")
def recorded_feed(recorded_root: Path) -> Iterator[FeedHandle]:
    """A paused feed replaying a recorded market, logging its trades, serving a dump file,
    and answering every third weighted REST request with 429."""
    root = recorded_root
    write_trade_file(root / "market.csv", _recorded_market())
    (root / "dumps" / "BTCUSDT").mkdir(parents=True)
    (root / "dumps" / "BTCUSDT" / DUMP_NAME).write_bytes(b"PK\x05\x06" + bytes(18))
    (root / "dumps" / "BTCUSDT" / f"{DUMP_NAME}.CHECKSUM").write_text(f"abc  {DUMP_NAME}\n")
    with running_feed(symbols=["BTCUSDT", "ETHUSDT"], trade_file=str(root / "market.csv"),
                      trade_log=str(root / "log.jsonl"), rate=2000, start_paused=True,
                      rest_429_every=3, retry_after=1, ban_seconds=1,
                      dumps_dir=str(root / "dumps")) as feed:
        yield feed


def test_rest_429_then_418_ban_and_dump_files(recorded_feed: FeedHandle) -> None:
    feed = recorded_feed
    with httpx.Client(base_url=feed.rest_url, timeout=10) as client:

        def trades() -> httpx.Response:
            return client.get("/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 1})

        assert [trades().status_code for _ in range(2)] == [200, 200]
        limited = trades()
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
        assert limited.json()["code"] == -1003
        assert limited.headers["X-MBX-USED-WEIGHT-1M"] == "75"
        banned = trades()  # did not wait for Retry-After
        assert (banned.status_code, banned.headers["Retry-After"]) == (418, "1")
        time.sleep(1.1)
        assert trades().status_code == 200
        dump = client.get(f"/data/spot/daily/trades/BTCUSDT/{DUMP_NAME}")
        assert (dump.status_code, dump.content) == (200, b"PK\x05\x06" + bytes(18))
        checksum = client.get(f"/data/spot/daily/trades/BTCUSDT/{DUMP_NAME}.CHECKSUM")
        assert checksum.text == f"abc  {DUMP_NAME}\n"
        assert client.get("/data/spot/daily/trades/BTCUSDT/nope.zip").status_code == 404
    stats = feed.stats()
    assert (stats["rest_429"], stats["rest_418"]) == (1, 1)


def test_recorded_market_replays_exactly_and_is_logged(recorded_feed: FeedHandle,
                                                       recorded_root: Path) -> None:
    feed = recorded_feed
    recorded = _recorded_market()

    async def run() -> list[Any]:
        async with connect(feed.ws_url + "/stream?streams=btcusdt@trade/ethusdt@trade",
                           max_queue=None) as ws:
            await asyncio.to_thread(feed.resume)
            async with asyncio.timeout(10):
                return [orjson.loads(await ws.recv())["data"] for _ in range(500)]

    events = asyncio.run(run())
    stats = feed.wait_until(lambda s: s["done"])
    assert {s: v["produced"] for s, v in stats["symbols"].items()} == {"BTCUSDT": 250,
                                                                     "ETHUSDT": 250}
    streamed = sorted((e["s"], e["t"], e["p"], e["q"], e["T"], e["m"]) for e in events)
    expected = sorted((t.symbol, t.trade_id, str(t.price), str(t.quantity), t.time_ms,
                       t.is_buyer_maker) for t in recorded)
    assert streamed == expected
    assert feed.trades("BTCUSDT") + feed.trades("ETHUSDT") == recorded
    logged = read_trade_file(recorded_root / "log.jsonl")
    assert logged["BTCUSDT"] + logged["ETHUSDT"] == recorded
