"""The REST client's rate-limit manners and its historicalTrades → trades fallback.

The client under test is real; the exchange is an in-process httpx.MockTransport that answers
the way Binance documents (headers, 429 + Retry-After, 401 for historicalTrades).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from binance_etl.ingest.rest import BinanceRest, RestError


def row(trade_id: int) -> dict[str, object]:
    return {"id": trade_id, "price": "1.50000000", "qty": "2.00000000", "quoteQty": "3",
            "time": 1764150000000 + trade_id, "isBuyerMaker": False, "isBestMatch": True}


class Recorder:
    """The client's clock: sleeping records the delay and moves time on at once."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def client(handler, recorder: Recorder, **kwargs) -> BinanceRest:  # type: ignore[no-untyped-def]
    transport = httpx.MockTransport(handler)
    return BinanceRest("http://exchange.test", client=httpx.AsyncClient(transport=transport),
                       sleep=recorder.sleep, monotonic=recorder.monotonic, **kwargs)


def test_429_waits_retry_after_then_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200, json=[row(5), row(6)], headers={"X-MBX-USED-WEIGHT-1M": "30"})

    recorder = Recorder()
    rest = client(handler, recorder)
    trades = asyncio.run(rest.trades_from("BTCUSDT", 5, 2))
    assert [t.trade_id for t in trades] == [5, 6]
    assert trades[0].price == Decimal("1.50000000")
    assert recorder.sleeps == [7.0]
    assert rest.rate_limited == 1
    assert rest.used_weight == 30
    assert "historicalTrades?symbol=BTCUSDT&fromId=5&limit=2" in calls[-1]


def test_retry_after_holds_back_every_task_of_the_client() -> None:
    sent: list[float] = []
    recorder = Recorder()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(recorder.now)
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"})
        return httpx.Response(200, json=[])

    rest = client(handler, recorder)

    async def two_tasks() -> None:
        await rest.get("/api/v3/trades")  # told to wait 3 s
        await rest.get("/api/v3/time")  # another caller: must wait too

    asyncio.run(two_tasks())
    assert sent == [1000.0, 1003.0, 1003.0]


def test_418_ban_is_waited_out_too() -> None:
    answers = iter([httpx.Response(418, headers={"Retry-After": "120"}),
                    httpx.Response(200, json={"symbols": [{"symbol": "BTCUSDT"}]})])
    recorder = Recorder()
    rest = client(lambda request: next(answers), recorder)
    assert asyncio.run(rest.unknown_symbols(["BTCUSDT", "NOPEUSDT"])) == ["NOPEUSDT"]
    assert recorder.sleeps == [120.0]


def test_weight_near_the_limit_pauses_until_the_next_minute() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[], headers={"X-MBX-USED-WEIGHT-1M": "5900"})

    recorder = Recorder()
    now = [600.0 + 12.5]  # 12.5 s into a minute
    rest = client(handler, recorder, clock=lambda: now[0])
    asyncio.run(rest.get("/api/v3/trades"))
    assert recorder.sleeps == []
    asyncio.run(rest.get("/api/v3/trades"))
    assert recorder.sleeps == [pytest.approx(47.6)]
    now[0] = 661.0  # a new minute: the server's window rolled over, no wait
    asyncio.run(rest.get("/api/v3/trades"))
    assert len(recorder.sleeps) == 1


def test_exchange_info_rate_limit_is_adopted() -> None:
    info = {"symbols": [], "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": 1200}]}
    rest = client(lambda request: httpx.Response(200, json=info), Recorder())
    asyncio.run(rest.exchange_info())
    assert rest.weight_limit == 1200


def test_historical_refused_falls_back_to_recent_trades_filtered_by_id() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("historicalTrades"):
            return httpx.Response(401, json={"code": -2014, "msg": "API-key format invalid."})
        return httpx.Response(200, json=[row(i) for i in range(90, 110)])

    rest = client(handler, Recorder())
    trades = asyncio.run(rest.trades_from("BTCUSDT", 100, 5))
    assert [t.trade_id for t in trades] == [100, 101, 102, 103, 104]
    asyncio.run(rest.trades_from("BTCUSDT", 105, 5))
    assert paths == ["/api/v3/historicalTrades", "/api/v3/trades", "/api/v3/trades"]


def test_client_errors_and_malformed_rows_raise_rest_error() -> None:
    rest = client(lambda request: httpx.Response(400, json={"msg": "Invalid symbol."}), Recorder())
    with pytest.raises(RestError, match="HTTP 400") as error:
        asyncio.run(rest.trades_from("BTCUSDT", 1))
    assert error.value.status == 400
    bad = client(lambda request: httpx.Response(200, json=[{"id": 1}]), Recorder())
    with pytest.raises(RestError, match="malformed row"):
        asyncio.run(bad.trades_from("BTCUSDT", 1))


def test_server_errors_are_retried_with_backoff_then_given_up() -> None:
    recorder = Recorder()
    rest = client(lambda request: httpx.Response(503), recorder, max_attempts=4)
    with pytest.raises(RestError, match="HTTP 503"):
        asyncio.run(rest.get("/api/v3/ping"))
    assert len(recorder.sleeps) == 3
    assert recorder.sleeps[0] <= 0.5 < recorder.sleeps[2] <= 2.0
