"""Parsing stream frames and REST rows into typed trades."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from binance_etl.ingest.trade import (
    FrameError,
    FrameParser,
    Trade,
    control_event,
    datetime_to_ms,
    parse_frame,
    parse_rest_trade,
)

EVENT = {
    "e": "trade", "E": 1764150000123, "s": "BTCUSDT", "t": 5123456789,
    "p": "87123.45000000", "q": "0.00012300", "T": 1764150000120, "m": True, "M": True,
}


def frame(**changes: object) -> bytes:
    data = {**EVENT, **changes}
    return orjson.dumps({"stream": "btcusdt@trade", "data": data})


def test_combined_frame_becomes_a_typed_trade() -> None:
    event = parse_frame(frame())
    assert event is not None
    assert event.trade == Trade(
        "BTCUSDT", 5123456789, Decimal("87123.45000000"), Decimal("0.00012300"),
        datetime(2025, 11, 26, 9, 40, 0, 120_000, tzinfo=UTC),
        datetime(2025, 11, 26, 9, 40, 0, 123_000, tzinfo=UTC), True,
    )
    assert event.trade.trade_time.tzinfo is UTC
    assert (event.event_ms, event.trade_ms) == (1764150000123, 1764150000120)
    assert str(event.trade.price) == "87123.45000000"  # exact, all eight places kept


def test_unknown_and_legacy_fields_are_ignored() -> None:
    event = parse_frame(frame(b=88, a=50, X="MARKET", new_field={"x": [1]}))
    assert event is not None
    assert event.trade.trade_id == EVENT["t"]


def test_raw_stream_event_without_envelope() -> None:
    parser = FrameParser()
    trade = parser.parse(orjson.dumps(EVENT))
    assert trade is not None
    assert trade.symbol == "BTCUSDT"
    assert (parser.event_ms, parser.trade_ms) == (EVENT["E"], EVENT["T"])


@pytest.mark.parametrize(
    "payload",
    [
        b'{"result":null,"id":1}',
        b'{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1764150000123}}',
        b'{"e":"serverShutdown","E":1764150000123}',
    ],
)
def test_non_trade_frames_are_not_trades(payload: bytes) -> None:
    assert parse_frame(payload) is None


def test_server_shutdown_is_reported_as_control_event() -> None:
    payload = b'{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}'
    assert control_event(payload) == "serverShutdown"
    assert control_event(frame()) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"stream":"btcusdt@trade","data":{"e":"trade"', "not JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (frame(p=87123.45), "price"),
        (frame(p="8.7e4"), "price"),
        (frame(p="-1.0"), "price"),
        (frame(p="NaN"), "price"),
        (frame(q="0.000000001"), "quantity"),
        (frame(q="12345678901234567890123.0"), "quantity"),
        (frame(t="42"), "trade id"),
        (frame(t=-1), "trade id"),
        (frame(T=1.5), "time"),
        (frame(T=17641500001200000), "time"),
        (frame(E="soon"), "time"),
        (frame(m="true"), "m"),
        (frame(s=7), "symbol"),
        (orjson.dumps({"stream": "x", "data": {k: v for k, v in EVENT.items() if k != "q"}}),
         "'q'"),
        (orjson.dumps({"stream": "x", "data": "trade"}), "not an object"),
    ],
)
def test_malformed_frames_raise_frame_error(payload: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        parse_frame(payload)


def test_parser_cache_keeps_each_trade_its_own_values() -> None:
    parser = FrameParser()
    parser.CACHE_LIMIT = 3  # force evictions too
    seen = []
    for n in range(10):
        trade = parser.parse(frame(t=n, p=f"{n}.5", q="1.00000000", T=1764150000000 + n))
        assert trade is not None
        assert isinstance(trade, Trade)
        seen.append(trade)
    assert [t.price for t in seen] == [Decimal(f"{n}.5") for n in range(10)]
    assert [datetime_to_ms(t.trade_time) for t in seen] == [1764150000000 + n for n in range(10)]
    with pytest.raises(FrameError):
        parser.parse(frame(p=["1.0"]))  # unhashable value takes the slow path, still refused


def test_rest_row_becomes_trade_without_event_time() -> None:
    row = {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
           "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}
    trade = parse_rest_trade("BNBBTC", row)
    assert trade == Trade("BNBBTC", 28457, Decimal("4.00000100"), Decimal("12.00000000"),
                          datetime(2017, 7, 12, 13, 19, 9, 590_000, tzinfo=UTC), None, True)
    with pytest.raises(FrameError, match="'qty'"):
        parse_rest_trade("BNBBTC", {k: v for k, v in row.items() if k != "qty"})
