"""Stream names and combined-stream URLs, split over connections of at most 1024 streams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_STREAMS_PER_CONNECTION = 1024  # Binance's limit per WebSocket connection


@dataclass(frozen=True)
class StreamGroup:
    """The symbols one connection carries, and the URL that subscribes to them."""

    url: str
    symbols: tuple[str, ...]


def stream_name(symbol: str) -> str:
    """BTCUSDT -> btcusdt@trade (Binance stream names are lowercase)."""
    return f"{symbol.lower()}@trade"


def combined_url(base_url: str, symbols: Sequence[str]) -> str:
    """{base}/stream?streams=a@trade/b@trade"""
    if not symbols:
        raise ValueError("a combined stream needs at least one symbol")
    return f"{base_url.rstrip('/')}/stream?streams=" + "/".join(stream_name(s) for s in symbols)


def stream_groups(
    base_url: str, symbols: Sequence[str], per_connection: int = MAX_STREAMS_PER_CONNECTION
) -> list[StreamGroup]:
    """Split the symbols over as few connections as the per-connection limit allows."""
    if not 1 <= per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"per_connection must be 1..{MAX_STREAMS_PER_CONNECTION}")
    groups = []
    for start in range(0, len(symbols), per_connection):
        chunk = tuple(symbols[start : start + per_connection])
        groups.append(StreamGroup(combined_url(base_url, chunk), chunk))
    return groups
