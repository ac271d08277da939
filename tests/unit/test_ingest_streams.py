"""Stream names, combined-stream URLs and their split over connections."""

from __future__ import annotations

import pytest

from binance_etl.ingest.streams import MAX_STREAMS_PER_CONNECTION, combined_url, stream_groups


def test_combined_url_uses_lowercase_trade_streams() -> None:
    url = combined_url("wss://stream.binance.com:9443/", ["BTCUSDT", "ETHUSDT"])
    assert url == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"


def test_more_than_1024_streams_are_split_over_connections() -> None:
    symbols = [f"S{n:05d}USDT" for n in range(2500)]
    groups = stream_groups("ws://127.0.0.1:1", symbols)
    assert [len(g.symbols) for g in groups] == [1024, 1024, 452]
    assert [s for g in groups for s in g.symbols] == symbols
    for group in groups:
        streams = group.url.split("?streams=", 1)[1].split("/")
        assert len(streams) <= MAX_STREAMS_PER_CONNECTION
        assert streams == [f"{s.lower()}@trade" for s in group.symbols]


def test_small_lists_use_one_connection_and_limits_are_checked() -> None:
    assert len(stream_groups("ws://h", ["BTCUSDT"])) == 1
    assert [g.symbols for g in stream_groups("ws://h", ["A", "B", "C"], 2)] == [("A", "B"), ("C",)]
    with pytest.raises(ValueError, match="per_connection"):
        stream_groups("ws://h", ["A"], 1025)
    with pytest.raises(ValueError, match="at least one"):
        combined_url("ws://h", [])
