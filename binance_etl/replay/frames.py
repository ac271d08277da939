"""Binance wire formats, encoded once per trade and shared by every connection.

Server-to-client WebSocket frames are never masked, so a whole frame (header + payload) can be
built once and written to any number of sockets, many frames per write.
"""

from __future__ import annotations

import struct
from decimal import ROUND_HALF_EVEN, Decimal

import orjson

from binance_etl.replay.market import Trade

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
EIGHT_PLACES = Decimal("1E-8")

_EVENT = '{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}'


def plain(value: Decimal) -> str:
    """Fixed-point text, never scientific: str(Decimal("0.00000001")) would be "1E-8"."""
    text = str(value)
    return text if "E" not in text else format(value, "f")


def trade_event(trade: Trade, event_ms: int, micro: bool = False) -> bytes:
    """The raw stream payload, fields in Binance's order `e,E,s,t,p,q,T,m,M`.

    `micro` gives `E` and `T` in microseconds (the stream's `timeUnit=MICROSECOND`)."""
    scale = 1000 if micro else 1
    return (_EVENT % (event_ms * scale, trade.symbol, trade.trade_id, plain(trade.price),
                      plain(trade.quantity), trade.time_ms * scale,
                      "true" if trade.is_buyer_maker else "false")).encode()


def combined(stream: str, payload: bytes) -> bytes:
    """A combined-stream envelope `{"stream":..,"data":..}` around a raw payload."""
    return b'{"stream":"%s","data":%s}' % (stream.encode(), payload)


def _header(size: int, opcode: int = OP_TEXT) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


TEXT_HEADERS = [_header(size) for size in range(4096)]


def frame_header(size: int) -> bytes:
    """The header of a final, unmasked text frame with a `size`-byte payload."""
    return TEXT_HEADERS[size] if size < 4096 else _header(size)


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One complete, final, unmasked WebSocket frame."""
    return _header(len(payload), opcode) + payload


def server_shutdown_event(event_ms: int) -> bytes:
    return b'{"e":"serverShutdown","E":%d}' % event_ms


def rest_trade(trade: Trade) -> dict[str, object]:
    """`/api/v3/trades` and `/api/v3/historicalTrades` item."""
    quote = (trade.price * trade.quantity).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)
    return {
        "id": trade.trade_id,
        "price": plain(trade.price),
        "qty": plain(trade.quantity),
        "quoteQty": plain(quote),
        "time": trade.time_ms,
        "isBuyerMaker": trade.is_buyer_maker,
        "isBestMatch": True,
    }


def rest_trades(trades: list[Trade]) -> bytes:
    return orjson.dumps([rest_trade(trade) for trade in trades])
