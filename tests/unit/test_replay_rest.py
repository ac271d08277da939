"""The REST handler against a real market (no network): Binance's answers and errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from binance_etl.replay.control import StreamRequest, parse_stream_path
from binance_etl.replay.generator import SymbolGenerator
from binance_etl.replay.limits import WeightLimiter
from binance_etl.replay.market import Market
from binance_etl.replay.options import FeedOptions, parse_args, to_argv
from binance_etl.replay.rest import RestApi


class Control:
    def __init__(self) -> None:
        self.paused = False

    def stats(self) -> dict[str, object]:
        return {"paused": self.paused}

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def drop_connections(self) -> int:
        return 0


@pytest.fixture
def api(tmp_path: Path) -> RestApi:
    market = Market({s: SymbolGenerator(s, 1) for s in ("BTCUSDT", "1000PEPEUSDT")})
    market.produce("BTCUSDT", 1500, 0, 100)
    (tmp_path / "BTCUSDT").mkdir()
    (tmp_path / "BTCUSDT" / "BTCUSDT-trades-2025-09-10.zip").write_bytes(b"PK\x03\x04zip")
    return RestApi(market, WeightLimiter(6000), Control(), str(tmp_path))


def test_historical_trades_and_weight_header(api: RestApi) -> None:
    response = api.handle("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1000&limit=3", "ip")
    assert response.status == 200
    assert [item["id"] for item in orjson.loads(response.body)] == [1000, 1001, 1002]
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == "25"
    recent = api.handle("/api/v3/trades?symbol=BTCUSDT", "ip")
    assert [i["id"] for i in orjson.loads(recent.body)] == list(range(1001, 1501))
    assert recent.headers["X-MBX-USED-WEIGHT-1M"] == "50"
    past_end = api.handle("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1501", "ip")
    assert orjson.loads(past_end.body) == []


@pytest.mark.parametrize(("target", "code"), [
    ("/api/v3/trades?symbol=FOOBAR", -1121),
    ("/api/v3/trades", -1102),
    ("/api/v3/trades?symbol=BTCUSDT&limit=1001", -1130),
    ("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=x", -1100),
    ("/api/v3/exchangeInfo?symbol=FOOBAR", -1121),
    ('/api/v3/exchangeInfo?symbols=["BTCUSDT","NOPE"]', -1121),
])
def test_binance_errors(api: RestApi, target: str, code: int) -> None:
    response = api.handle(target, "ip")
    assert response.status == 400
    assert orjson.loads(response.body)["code"] == code
    assert "X-MBX-USED-WEIGHT-1M" in response.headers


def test_exchange_info(api: RestApi) -> None:
    everything = orjson.loads(api.handle("/api/v3/exchangeInfo", "ip").body)
    assert [s["symbol"] for s in everything["symbols"]] == ["BTCUSDT", "1000PEPEUSDT"]
    pepe = everything["symbols"][1]
    assert (pepe["baseAsset"], pepe["quoteAsset"], pepe["status"]) == ("1000PEPE", "USDT",
                                                                       "TRADING")
    some = orjson.loads(api.handle('/api/v3/exchangeInfo?symbols=["1000PEPEUSDT"]', "ip").body)
    assert [s["symbol"] for s in some["symbols"]] == ["1000PEPEUSDT"]


def test_dump_files_and_path_safety(api: RestApi) -> None:
    ok = api.handle("/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-09-10.zip", "ip")
    assert (ok.status, ok.body, ok.headers["Content-Type"]) == (200, b"PK\x03\x04zip",
                                                                "application/zip")
    for target in ("/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-09-11.zip",
                   "/data/spot/daily/trades/BTCUSDT/../BTCUSDT/x.zip",
                   "/data/spot/daily/trades/btcusdt/BTCUSDT-trades-2025-09-10.zip"):
        assert api.handle(target, "ip").status == 404


def test_controls(api: RestApi) -> None:
    assert orjson.loads(api.handle("/_replay/pause", "ip").body) == {"paused": True}
    page = orjson.loads(api.handle("/_replay/trades?symbol=BTCUSDT", "ip").body)
    assert [i["id"] for i in page] == list(range(1, 1501))
    assert api.handle("/nothing", "ip").status == 404


def test_options_round_trip_through_flags() -> None:
    options = FeedOptions(symbols=["btcusdt", "ETHUSDT"], rate=0, drop_after_frames=50,
                          duplicate_fraction=0.25, start_paused=True, trade_file="x.csv")
    assert parse_args(to_argv(options)) == options
    assert to_argv(FeedOptions()) == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        FeedOptions(corrupt_fraction=2)


@pytest.mark.parametrize(("target", "streams", "envelope", "micro"), [
    ("/ws/btcusdt@trade", ["btcusdt@trade"], False, False),
    ("/ws/btcusdt@trade/ethusdt@trade", ["btcusdt@trade", "ethusdt@trade"], False, False),
    ("/ws", [], False, False),
    ("/stream?streams=btcusdt@trade/ethusdt@trade&timeUnit=MICROSECOND",
     ["btcusdt@trade", "ethusdt@trade"], True, True),
    ("/stream", [], True, False),
])
def test_stream_paths(target: str, streams: list[str], envelope: bool, micro: bool) -> None:
    assert parse_stream_path(target, 1024) == StreamRequest(streams, envelope, micro)


def test_stream_path_limits_and_other_paths() -> None:
    assert parse_stream_path("/api/v3/ping", 1024) is None
    with pytest.raises(ValueError, match="too many streams"):
        parse_stream_path("/stream?streams=" + "/".join(f"s{n}@trade" for n in range(5)), 4)
