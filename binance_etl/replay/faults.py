"""Per-connection fault injection: which trade frames to send twice, which to spoil, and how.

Each connection gets its own seeded generator, so a run with one seed spoils the same frames."""

from __future__ import annotations

import random

from binance_etl.replay.frames import combined, trade_event, ws_frame
from binance_etl.replay.market import Trade

CORRUPTIONS = ("invalid_json", "missing_field", "garbage_price", "garbage_id", "wrong_type")


def corrupt_payload(kind: str, trade: Trade, event_ms: int) -> bytes:
    """A trade event spoiled one way: the feed sends it in place of the real one."""
    good = trade_event(trade, event_ms)
    if kind == "invalid_json":
        return good[: len(good) // 2]
    if kind == "missing_field":
        return good.replace(b'"p":"%s",' % str(trade.price).encode(), b"")
    if kind == "garbage_price":
        return good.replace(b'"p":"%s"' % str(trade.price).encode(), b'"p":"12x.5?"')
    if kind == "garbage_id":
        return good.replace(b'"t":%d,' % trade.trade_id, b'"t":"n/a",')
    if kind == "wrong_type":
        return b'["trade",%d,"%s"]' % (trade.trade_id, trade.symbol.encode())
    raise ValueError(f"unknown corruption {kind!r}")


class FaultPlan:
    """Decides, frame by frame, what a connection receives instead of the clean stream."""

    def __init__(self, seed: int, duplicate_fraction: float, corrupt_fraction: float) -> None:
        self._rng = random.Random(seed)
        self.duplicate_fraction = duplicate_fraction
        self.corrupt_fraction = corrupt_fraction
        self.duplicated = 0
        self.corrupted = 0

    @property
    def active(self) -> bool:
        return self.duplicate_fraction > 0 or self.corrupt_fraction > 0

    def apply(self, frame: bytes, trade: Trade, event_ms: int, stream: str | None) -> list[bytes]:
        """The frames to send for one trade (its clean frame, twice, or a corrupt one)."""
        draw = self._rng.random()
        if draw < self.corrupt_fraction:
            self.corrupted += 1
            payload = corrupt_payload(self._rng.choice(CORRUPTIONS), trade, event_ms)
            return [ws_frame(combined(stream, payload) if stream else payload)]
        if draw < self.corrupt_fraction + self.duplicate_fraction:
            self.duplicated += 1
            return [frame, frame]
        return [frame]
