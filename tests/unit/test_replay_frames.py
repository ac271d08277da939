"""Wire formats: trade events, combined envelopes, WebSocket frames, REST items, corruptions."""

from __future__ import annotations

import struct
from decimal import Decimal

import orjson
import pytest

from binance_etl.replay.broadcast import Batch
from binance_etl.replay.faults import CORRUPTIONS, FaultPlan, corrupt_payload
from binance_etl.replay.frames import combined, plain, rest_trade, trade_event, ws_frame
from binance_etl.replay.generator import SymbolGenerator
from binance_etl.replay.market import Trade

TRADE = Trade("BTCUSDT", 12345, Decimal("95000.01000000"), Decimal("0.00150000"),
              1_757_000_000_123, True)


def _unframe(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into (opcode, payload) per RFC 6455 (server frames: no mask)."""
    out = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert first & 0x80, "FIN must be set"
        assert not second & 0x80, "server frames are not masked"
        size, pos = second & 0x7F, pos + 2
        if size == 126:
            (size,), pos = struct.unpack("!H", data[pos:pos + 2]), pos + 2
        elif size == 127:
            (size,), pos = struct.unpack("!Q", data[pos:pos + 8]), pos + 8
        out.append((first & 0x0F, data[pos:pos + size]))
        pos += size
    return out


def test_trade_event_is_binance_shaped() -> None:
    payload = trade_event(TRADE, 1_757_000_000_125)
    assert payload == (b'{"e":"trade","E":1757000000125,"s":"BTCUSDT","t":12345,'
                       b'"p":"95000.01000000","q":"0.00150000","T":1757000000123,'
                       b'"m":true,"M":true}')
    assert list(orjson.loads(payload)) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]


def test_microsecond_time_unit() -> None:
    event = orjson.loads(trade_event(TRADE, 1_757_000_000_125, micro=True))
    assert event["T"] == 1_757_000_000_123_000
    assert event["E"] == 1_757_000_000_125_000


def test_combined_envelope() -> None:
    envelope = orjson.loads(combined("btcusdt@trade", trade_event(TRADE, 1)))
    assert envelope["stream"] == "btcusdt@trade"
    assert envelope["data"]["t"] == 12345


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_ws_frame_lengths(size: int) -> None:
    payload = b"x" * size
    assert _unframe(ws_frame(payload)) == [(1, payload)]


def test_batch_frames_match_single_encoding_and_join() -> None:
    trades = SymbolGenerator("ETHUSDT", 1).generate(300, 100, 102)
    batch = Batch("ETHUSDT", trades, 103)
    for envelope in (False, True):
        for micro in (False, True):
            expected = [trade_event(t, 103, micro) for t in trades]
            if envelope:
                expected = [combined("ethusdt@trade", p) for p in expected]
            assert _unframe(batch.joined(envelope, micro)) == [(1, p) for p in expected]


def test_tiny_prices_are_never_scientific() -> None:
    trades = SymbolGenerator("SHIBUSDT", 1).generate(50, 0, 0)  # prices below 1e-6
    assert any(t.price < Decimal("0.000001") for t in trades)
    for envelope in (False, True):
        for _, payload in _unframe(Batch("SHIBUSDT", trades, 0).joined(envelope, False)):
            assert b"E-" not in payload
            event = orjson.loads(payload)
            event = event["data"] if envelope else event
            assert Decimal(event["p"]).as_tuple().exponent == -8
    assert str(rest_trade(trades[0])["price"]).startswith("0.000000")
    assert plain(Decimal("1E-8")) == "0.00000001"


def test_rest_item_and_exact_quote_quantity() -> None:
    item = rest_trade(TRADE)
    assert item == {"id": 12345, "price": "95000.01000000", "qty": "0.00150000",
                    "quoteQty": "142.50001500", "time": 1_757_000_000_123,
                    "isBuyerMaker": True, "isBestMatch": True}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_corruption_breaks_a_strict_parser(kind: str) -> None:
    payload = corrupt_payload(kind, TRADE, 5)
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    assert not (isinstance(event, dict) and isinstance(event.get("t"), int)
                and isinstance(event.get("p"), str) and _is_decimal(event["p"]))


def _is_decimal(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def test_fault_plan_is_seeded_and_proportional() -> None:
    trades = SymbolGenerator("BTCUSDT", 1).generate(4000, 0, 0)
    frames = [ws_frame(trade_event(t, 0)) for t in trades]

    def run() -> list[bytes]:
        plan = FaultPlan(9, duplicate_fraction=0.1, corrupt_fraction=0.05)
        out = []
        for frame, trade in zip(frames, trades, strict=True):
            out.extend(plan.apply(frame, trade, 0, None))
        assert 300 < plan.duplicated < 500
        assert 120 < plan.corrupted < 280
        assert len(out) == len(frames) + plan.duplicated
        return out

    assert run() == run()
