"""Deterministic generated trades: one seeded random walk per symbol.

Prices and quantities are whole numbers of 1e-8 units while they are generated (so every
value is exact) and become `Decimal`s with exactly eight decimal places, as Binance prints them.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from binance_etl.replay.market import Trade

UNITS = 100_000_000  # 1e-8 steps per whole unit
EIGHT_PLACES = Decimal("1E-8")


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """Magnitudes of one symbol, all in 1e-8 units: start price, price tick, lot, typical lots."""

    price: int
    tick: int
    lot: int
    median_lots: int


def _units(text: str) -> int:
    return int(Decimal(text) * UNITS)


# Realistic magnitudes for a few well-known spot symbols (late-2025 levels).
KNOWN_PROFILES: dict[str, SymbolProfile] = {
    "BTCUSDT": SymbolProfile(_units("95000"), _units("0.01"), _units("0.00001"), 500),
    "ETHUSDT": SymbolProfile(_units("3500"), _units("0.01"), _units("0.0001"), 500),
    "BNBUSDT": SymbolProfile(_units("650"), _units("0.01"), _units("0.001"), 200),
    "SOLUSDT": SymbolProfile(_units("180"), _units("0.01"), _units("0.001"), 1000),
    "XRPUSDT": SymbolProfile(_units("2.2"), _units("0.0001"), _units("0.1"), 2000),
    "DOGEUSDT": SymbolProfile(_units("0.35"), _units("0.00001"), _units("1"), 500),
    "PEPEUSDT": SymbolProfile(_units("0.000012"), 1, _units("1"), 2_000_000),
    "SHIBUSDT": SymbolProfile(_units("0.0000009"), 1, _units("1"), 5_000_000),
    "1000PEPEUSDT": SymbolProfile(_units("0.012"), _units("0.000001"), _units("1"), 2_000_000),
}


def _stable_seed(*parts: object) -> int:
    """A seed that does not depend on PYTHONHASHSEED or the process."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def profile_for(symbol: str) -> SymbolProfile:
    """The known profile, or one derived from the symbol's name (stable across runs)."""
    known = KNOWN_PROFILES.get(symbol)
    if known is not None:
        return known
    rng = random.Random(_stable_seed("profile", symbol))
    exponent = rng.randint(-4, 4)  # prices from 0.0001 to 10,000
    price = UNITS * 10**exponent if exponent >= 0 else UNITS // 10**-exponent
    tick = max(price // 10_000, 1)
    lot_exponent = max(-5, min(0, -exponent - 1))
    lot = UNITS // 10**-lot_exponent
    return SymbolProfile(price=price, tick=tick, lot=lot, median_lots=rng.choice([10, 100, 1000]))


def units_to_decimal(units: int) -> Decimal:
    """1e-8 units -> Decimal with exactly eight places (`95000.01000000`)."""
    whole, frac = divmod(units, UNITS)
    return Decimal(f"{whole}.{frac:08d}")


_STEPS = (-2, -1, -1, 0, 0, 0, 0, 1, 1, 2)
_SIZE_TABLE = 4096  # distinct trade sizes per symbol, drawn once from a log-normal
_DRAW_BITS = 40  # one draw per trade: step (mod 10), size (next 12 bits), side (bit 39)
_SIDE_BIT = 1 << 39


class SymbolGenerator:
    """The trade sequence of one symbol: same seed, same trades (ids, prices, sizes, sides).

    Trade times are given by the caller (live clock or benchmark clock); everything else is
    drawn from the seeded generator, so two runs with one seed agree trade for trade. Sizes
    come from a table drawn once per symbol and prices are cached as `Decimal`s, which keeps
    generation cheap enough for benchmark rates.
    """

    def __init__(self, symbol: str, seed: int, first_id: int = 1) -> None:
        self.symbol = symbol
        self.profile = profile_for(symbol)
        self._rng = random.Random(_stable_seed("trades", seed, symbol))
        self._time_rng = random.Random(_stable_seed("times", seed, symbol))
        self._price = self.profile.price
        self._next_id = first_id
        self._floor = self.profile.tick * 10
        log_median = math.log(self.profile.median_lots)
        lot = self.profile.lot
        self._sizes = [
            units_to_decimal(max(1, round(self._rng.lognormvariate(log_median, 1.2))) * lot)
            for _ in range(_SIZE_TABLE)
        ]
        self._prices: dict[int, Decimal] = {}

    @property
    def next_id(self) -> int:
        return self._next_id

    def _price_decimal(self, units: int) -> Decimal:
        value = self._prices.get(units)
        if value is None:
            if len(self._prices) > 100_000:
                self._prices.clear()
            value = self._prices[units] = units_to_decimal(units)
        return value

    def generate(self, count: int, start_ms: int, end_ms: int) -> list[Trade]:
        """The next `count` trades, with times in [start_ms, end_ms], non-decreasing; several
        may share one millisecond.

        Each trade takes exactly one draw from the content generator (price step, size and
        side come from its bits), so the sequence does not depend on how it is chunked; the
        times come from a second generator."""
        if count <= 0:
            return []
        span = max(end_ms - start_ms, 0) + 1
        if span == 1:
            times = [start_ms] * count
        else:
            time_random = self._time_rng.random
            times = sorted([start_ms + int(time_random() * span) for _ in range(count)])
        draw = self._rng.getrandbits
        tick = self.profile.tick
        floor = self._floor
        symbol = self.symbol
        sizes = self._sizes
        prices = self._prices
        price_decimal = self._price_decimal
        trades: list[Trade] = []
        append = trades.append
        new = tuple.__new__  # Trade's own __new__ is a Python function; this is the C one
        trade_id = self._next_id
        price = self._price
        for time_ms in times:
            bits = draw(_DRAW_BITS)
            step = _STEPS[bits % 10]
            price += step * tick
            if price < floor:
                price = floor + tick
                step = 1
            # A falling price means a seller hit the bid: the buyer was the maker.
            maker = step < 0 or (step == 0 and bits & _SIDE_BIT != 0)
            decimal_price = prices.get(price)
            if decimal_price is None:
                decimal_price = price_decimal(price)
            append(new(Trade, (symbol, trade_id, decimal_price,
                               sizes[(bits // 10) % _SIZE_TABLE], time_ms, maker)))
            trade_id += 1
        self._next_id = trade_id
        self._price = price
        return trades
