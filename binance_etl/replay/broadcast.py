"""One production step of one symbol, encoded lazily per wire variant and shared by all clients."""

from __future__ import annotations

from binance_etl.replay.frames import TEXT_HEADERS, combined, frame_header, trade_event
from binance_etl.replay.market import Trade

_EVENT = ('{"e":"trade","E":%d,"s":"%s","t":%%d,"p":"%%s","q":"%%s","T":%%d,"m":%%s,"M":true}')


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


class Batch:
    """Trades of one symbol produced together, with their event time (`E`)."""

    __slots__ = ("symbol", "stream", "trades", "event_ms", "_frames", "_joined")

    def __init__(self, symbol: str, trades: list[Trade], event_ms: int) -> None:
        self.symbol = symbol
        self.stream = stream_name(symbol)
        self.trades = trades
        self.event_ms = event_ms
        self._frames: dict[tuple[bool, bool], list[bytes]] = {}
        self._joined: dict[tuple[bool, bool], bytes] = {}

    def frames(self, envelope: bool, micro: bool) -> list[bytes]:
        """Complete WebSocket frames, one per trade: raw payloads or combined envelopes."""
        key = (envelope, micro)
        frames = self._frames.get(key)
        if frames is None:
            payloads = self._payloads(envelope, micro)
            try:
                headers = TEXT_HEADERS
                frames = [headers[len(payload)] + payload for payload in payloads]
            except IndexError:  # a payload longer than the header table
                frames = [frame_header(len(payload)) + payload for payload in payloads]
            self._frames[key] = frames
        return frames

    def _payloads(self, envelope: bool, micro: bool) -> list[bytes]:
        if not micro:
            # The hot path: everything constant in the batch is formatted once.
            template = _EVENT % (self.event_ms, self.symbol)
            if envelope:
                template = '{"stream":"%s","data":%s}' % (self.stream, template)  # noqa: UP031
            payloads = [(template % (t.trade_id, t.price, t.quantity, t.time_ms,
                                     "true" if t.is_buyer_maker else "false")).encode()
                        for t in self.trades]
            # str(Decimal) turns values below 1e-6 into "1E-8"; such batches take the slow path.
            if b"E-" not in b"".join(payloads):
                return payloads
        raw = [trade_event(t, self.event_ms, micro) for t in self.trades]
        return [combined(self.stream, p) for p in raw] if envelope else raw

    def joined(self, envelope: bool, micro: bool) -> bytes:
        """All frames as one buffer: a connection writes a whole step with one call."""
        key = (envelope, micro)
        data = self._joined.get(key)
        if data is None:
            data = self._joined[key] = b"".join(self.frames(envelope, micro))
        return data
