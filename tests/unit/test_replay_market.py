"""The generated and recorded markets: determinism, Binance-like values, tapes, trade files."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from binance_etl.replay.generator import SymbolGenerator, profile_for, units_to_decimal
from binance_etl.replay.market import Market, RecordedSource, Tape, Trade
from binance_etl.replay.tradefile import TradeFileError, read_trade_file, write_trade_file


def test_same_seed_same_trades_however_they_are_chunked() -> None:
    whole = SymbolGenerator("BTCUSDT", seed=5).generate(300, 1_000, 1_000)
    chunked_gen = SymbolGenerator("BTCUSDT", seed=5)
    chunked = (chunked_gen.generate(1, 1_000, 1_000) + chunked_gen.generate(120, 1_000, 1_000)
               + chunked_gen.generate(179, 1_000, 1_000))
    assert chunked == whole
    other = SymbolGenerator("BTCUSDT", seed=6).generate(300, 1_000, 1_000)
    assert [t.price for t in other] != [t.price for t in whole]


def test_ids_are_consecutive_and_times_ordered_with_shared_milliseconds() -> None:
    generator = SymbolGenerator("ETHUSDT", seed=1)
    trades = generator.generate(500, 10_000, 10_050) + generator.generate(500, 10_050, 10_060)
    assert [t.trade_id for t in trades] == list(range(1, 1001))
    times = [t.time_ms for t in trades]
    assert times == sorted(times)
    assert 10_000 <= times[0]
    assert times[-1] <= 10_060
    assert len(set(times)) < len(times)  # several trades share a millisecond
    assert generator.next_id == 1001


def test_values_have_eight_places_and_realistic_magnitudes() -> None:
    btc = SymbolGenerator("BTCUSDT", seed=2).generate(2000, 0, 10)
    pepe = SymbolGenerator("1000PEPEUSDT", seed=2).generate(2000, 0, 10)
    for trade in btc + pepe:
        assert trade.price.as_tuple().exponent == -8
        assert trade.quantity.as_tuple().exponent == -8
        assert trade.price > 0
        assert trade.quantity > 0
    assert all(Decimal(10_000) <= t.price < Decimal(1_000_000) for t in btc)
    assert all(Decimal("0.0001") <= t.price < Decimal(1) for t in pepe)
    assert max(t.quantity for t in pepe) >= Decimal(1_000_000)
    assert str(btc[0].price).count(".") == 1
    sides = {t.is_buyer_maker for t in btc}
    assert sides == {True, False}


def test_buyer_is_maker_when_price_falls() -> None:
    trades = SymbolGenerator("SOLUSDT", seed=3).generate(1000, 0, 0)
    for before, after in zip(trades, trades[1:], strict=False):
        if after.price < before.price:
            assert after.is_buyer_maker
        elif after.price > before.price:
            assert not after.is_buyer_maker


def test_unknown_symbols_get_a_stable_profile() -> None:
    assert profile_for("ABCUSDT") == profile_for("ABCUSDT")
    trades = SymbolGenerator("ABCUSDT", seed=1).generate(50, 0, 0)
    assert all(t.price > 0 and t.quantity > 0 for t in trades)


def test_units_to_decimal_is_exact() -> None:
    assert units_to_decimal(9_500_001_000_000) == Decimal("95000.01000000")
    assert units_to_decimal(1) == Decimal("0.00000001")


def test_trade_time_is_aware_utc_and_exact() -> None:
    trade = Trade("BTCUSDT", 1, Decimal("1.00000000"), Decimal("1.00000000"),
                  1_757_000_000_123, False)
    assert trade.trade_time == datetime(2025, 9, 4, 15, 33, 20, 123_000, tzinfo=UTC)


def _trade(trade_id: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(symbol, trade_id, Decimal("1.00000000"), Decimal("2.00000000"), trade_id, False)


def test_tape_keeps_the_newest_and_finds_by_id() -> None:
    tape = Tape(limit=100)
    for start in range(1, 301, 10):
        tape.extend([_trade(i) for i in range(start, start + 10)])
    assert tape.produced == 300
    assert tape.last_id == 300
    assert tape.first_id is not None
    assert 300 - 125 <= tape.first_id <= 201
    assert [t.trade_id for t in tape.from_id(250, 5)] == [250, 251, 252, 253, 254]
    assert tape.from_id(301, 5) == []
    assert tape.from_id(1, 1)[0].trade_id == tape.first_id  # older than kept: from the first kept
    assert [t.trade_id for t in tape.recent(2)] == [299, 300]


def test_market_tapes_what_it_produces_and_recordings_run_out() -> None:
    recorded = [_trade(i) for i in range(7, 12)]
    market = Market({"BTCUSDT": RecordedSource(recorded),
                     "ETHUSDT": SymbolGenerator("ETHUSDT", 1)})
    assert market.produce("BTCUSDT", 3, 0, 0) == recorded[:3]
    assert market.produce("BTCUSDT", 9, 0, 0) == recorded[3:]
    assert market.exhausted("BTCUSDT")
    assert not market.exhausted("ETHUSDT")
    assert market.trades("BTCUSDT", from_id=9, limit=2) == recorded[2:4]
    assert list(market.iter_all("BTCUSDT")) == recorded


@pytest.mark.parametrize("name", ["trades.csv", "trades.jsonl"])
def test_trade_file_round_trip(tmp_path: Path, name: str) -> None:
    trades = (SymbolGenerator("BTCUSDT", 4).generate(20, 5, 9)
              + SymbolGenerator("1000PEPEUSDT", 4).generate(20, 5, 9))
    write_trade_file(tmp_path / name, trades)
    loaded = read_trade_file(tmp_path / name)
    assert loaded["BTCUSDT"] + loaded["1000PEPEUSDT"] == trades


def test_trade_file_rejects_gaps_in_ids(tmp_path: Path) -> None:
    write_trade_file(tmp_path / "gap.csv", [_trade(1), _trade(2), _trade(4)])
    with pytest.raises(TradeFileError, match="does not follow"):
        read_trade_file(tmp_path / "gap.csv")


def test_trade_file_rejects_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("symbol,id,price,qty,time,isBuyerMaker\nBTCUSDT,1,abc,1,5,true\n")
    with pytest.raises(TradeFileError, match=r"bad.csv:2"):
        read_trade_file(path)
