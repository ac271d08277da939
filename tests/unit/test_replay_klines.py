"""The replay feed's klines: REST `/api/v3/klines` from the market's tape, klines dumps from the
dumps folder, and the faults that make them disagree (no network: the handler is called)."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from binance_etl.klines import parse_kline
from binance_etl.replay.dumps import generate_trades, write_klines_dump
from binance_etl.replay.generator import SymbolGenerator
from binance_etl.replay.limits import WeightLimiter
from binance_etl.replay.market import Market
from binance_etl.replay.rest import RestApi
from etl.klines_source import read_klines_zip
from tests.unit.test_replay_rest import Control

DAY = date(2024, 12, 31)  # a millisecond day


def api(tmp_path: Path, fault: str | None = None) -> RestApi:
    market = Market({"BTCUSDT": SymbolGenerator("BTCUSDT", 1)})
    market.produce("BTCUSDT", 600, 60_000, 239_999)  # three minutes of 1970, from 00:01
    return RestApi(market, WeightLimiter(6000), Control(), str(tmp_path), klines_fault=fault)


def rest(feed: RestApi, query: str) -> list[list[object]]:
    response = feed.handle(f"/api/v3/klines?symbol=BTCUSDT&interval=1m{query}", "ip")
    assert response.status == 200, response.body
    rows: list[list[object]] = orjson.loads(response.body)
    return rows


def test_rest_klines_agree_with_the_tape(tmp_path: Path) -> None:
    feed = api(tmp_path)
    trades = feed.market.trades("BTCUSDT", 1, 1000)
    rows = rest(feed, "&startTime=0&endTime=299999")
    klines = [parse_kline(row) for row in rows]
    # from the first minute the tape holds (00:01) to the last asked for (00:04, no trades)
    assert [k.open_ms for k in klines] == [60_000, 120_000, 180_000, 240_000]
    assert sum(k.trades for k in klines) == len(trades) == 600
    assert klines[0].open == trades[0].price
    in_second = [t for t in trades if 120_000 <= t.time_ms < 180_000]
    assert klines[1].high == max(t.price for t in in_second)
    assert klines[1].volume == sum((t.quantity for t in in_second), Decimal(0))
    assert klines[1].taker_buy_volume == sum(
        (t.quantity for t in in_second if not t.is_buyer_maker), Decimal(0))
    assert (klines[3].trades, klines[3].open) == (0, klines[2].close)
    assert rows[0][6] == 119_999  # close time
    assert len(rest(feed, "&startTime=0&endTime=299999&limit=2")) == 2
    response = feed.handle("/api/v3/klines?symbol=BTCUSDT&interval=1m", "ip")
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == "6"  # weight 2 per call


@pytest.mark.parametrize(("query", "code"), [("", -1102), ("&interval=5m", -1120)])
def test_rest_klines_errors(tmp_path: Path, query: str, code: int) -> None:
    response = api(tmp_path).handle(f"/api/v3/klines?symbol=BTCUSDT{query}", "ip")
    assert response.status == 400
    assert orjson.loads(response.body)["code"] == code


def test_rest_faults(tmp_path: Path) -> None:
    clean = [parse_kline(r) for r in rest(api(tmp_path), "&startTime=0&endTime=299999")]
    off = [parse_kline(r) for r in rest(api(tmp_path, "kline-off"),
                                        "&startTime=0&endTime=299999")]
    missing = [parse_kline(r) for r in rest(api(tmp_path, "trade-missing"),
                                            "&startTime=0&endTime=299999")]
    assert off[0].close - clean[0].close == Decimal("1E-8")
    assert off[1:] == clean[1:]
    assert (missing[0].trades, missing[0].volume - clean[0].volume) == (
        clean[0].trades + 1, Decimal("1E-8"))
    assert missing[1:] == clean[1:]


def test_klines_dump_served_and_spoiled_on_the_way_out(tmp_path: Path) -> None:
    trades = list(generate_trades("BTCUSDT", DAY, 500, first_id=1))
    files = write_klines_dump(tmp_path, "BTCUSDT", DAY, trades)
    clean, unit = read_klines_zip(files.zip_path)
    assert unit == "ms"
    path = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12-31.zip"
    served = api(tmp_path).handle(path, "ip")
    assert served.body == files.zip_path.read_bytes()
    assert api(tmp_path).handle(path.replace("BTCUSDT-1m", "ETHUSDT-1m"), "ip").status == 404

    spoiled_feed = api(tmp_path, "kline-off")
    spoiled = spoiled_feed.handle(path, "ip")
    checksum = spoiled_feed.handle(path + ".CHECKSUM", "ip").body.decode()
    assert checksum.split() == [hashlib.sha256(spoiled.body).hexdigest(),
                                "BTCUSDT-1m-2024-12-31.zip"]
    out = tmp_path / "spoiled.zip"
    out.write_bytes(spoiled.body)
    klines, _ = read_klines_zip(out)
    differ = [(a, b) for a, b in zip(clean, klines, strict=True) if a != b]
    assert len(differ) == 1
    assert differ[0][1].close - differ[0][0].close == Decimal("1E-8")
