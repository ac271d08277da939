"""The klines client against a local HTTP server that keeps Binance's rules: pages of at most
1,000, request weight in `X-MBX-USED-WEIGHT-1M`, 429 with `Retry-After`, and a 418 ban for a
request that arrives before the Retry-After has passed."""

from __future__ import annotations

import asyncio
import http.server
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest

from binance_etl.klines import rest_klines
from binance_etl.rest import RateLimitedRest
from etl.klines_source import day_ms, fetch_day_klines
from tests.httpserver import serving

DAY = date(2025, 9, 10)


@dataclass
class Exchange:
    url: str = ""
    throttle_first: bool = True
    calls: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    blocked_until: float = 0.0


def kline_row(open_ms: int) -> list[object]:
    return [open_ms, "1.00000000", "1.00000000", "1.00000000", "1.00000000", "0", open_ms + 59_999,
            "0", 0, "0", "0", "0"]


def _handler(state: Exchange) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def reply(self, status: int, body: object, **headers: str) -> None:
            data = json.dumps(body).encode()
            state.statuses.append(status)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path != "/api/v3/klines":
                self.reply(404, {"code": -1, "msg": "not found"})
                return
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            state.calls.append(query)
            weight = {"X-MBX-USED-WEIGHT-1M": str(2 * len(state.calls))}
            if time.monotonic() < state.blocked_until:
                self.reply(418, {"code": -1003, "msg": "banned"}, **weight)
                return
            if state.throttle_first and len(state.calls) == 1:
                state.blocked_until = time.monotonic() + 1
                self.reply(429, {"code": -1003, "msg": "too many"}, **weight,
                           **{"Retry-After": "1"})
                return
            start, end = int(query["startTime"]), int(query["endTime"])
            limit = min(int(query.get("limit", 500)), 1000)
            first = start + (-start) % 60_000
            rows = [kline_row(t) for t in range(first, end + 1, 60_000)][:limit]
            self.reply(200, rows, **weight)

    return Handler


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    state = Exchange()
    with serving(_handler(state), "exchange") as url:
        state.url = url
        yield state


def test_pages_a_day_and_waits_out_a_429_without_earning_a_418(exchange: Exchange) -> None:
    start, end = day_ms(DAY)

    async def run() -> tuple[list[object], RateLimitedRest]:
        rest = RateLimitedRest(exchange.url)
        try:
            return list(await rest_klines(rest, "BTCUSDT", start, end)), rest
        finally:
            await rest.aclose()

    klines, rest = asyncio.run(run())
    assert len(klines) == 1440
    assert exchange.statuses == [429, 200, 200]  # never a 418
    assert [int(call["startTime"]) for call in exchange.calls[1:]] == [start, start + 60_000_000]
    assert all(call["interval"] == "1m" and call["limit"] == "1000" for call in exchange.calls)
    assert rest.rate_limited == 1
    assert rest.used_weight == 6


def test_missing_dump_falls_back_to_rest(exchange: Exchange) -> None:
    exchange.throttle_first = False
    got = fetch_day_klines(exchange.url, exchange.url, ["BTCUSDT", "ETHUSDT"], DAY)
    assert got.unavailable == {}
    assert {symbol: item.source for symbol, item in got.symbols.items()} == {
        "BTCUSDT": "rest", "ETHUSDT": "rest"}
    assert len(got.symbols["ETHUSDT"].klines) == 1440


def test_nothing_reachable_is_a_reason_not_an_error() -> None:
    got = fetch_day_klines("http://127.0.0.1:9", "http://127.0.0.1:9", ["BTCUSDT"], DAY)
    assert got.symbols == {}
    assert "dump unreachable" in got.unavailable["BTCUSDT"]
    assert "REST unavailable" in got.unavailable["BTCUSDT"]
