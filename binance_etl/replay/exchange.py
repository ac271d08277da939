"""`/api/v3/exchangeInfo` content for the market's symbols."""

from __future__ import annotations

from binance_etl.replay.frames import plain
from binance_etl.replay.generator import SymbolProfile, profile_for, units_to_decimal

# Longest first, so that "FDUSD" wins over "USD"-like shorter suffixes.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR",
                "TRY", "BRL", "JPY", "GBP")
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def split_symbol(symbol: str) -> tuple[str, str]:
    """`BTCUSDT` -> (`BTC`, `USDT`); unknown quotes fall back to the last three letters."""
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3] or symbol, symbol[-3:]


def _filters(profile: SymbolProfile) -> list[dict[str, object]]:
    return [
        {"filterType": "PRICE_FILTER", "minPrice": plain(units_to_decimal(profile.tick)),
         "maxPrice": "1000000.00000000", "tickSize": plain(units_to_decimal(profile.tick))},
        {"filterType": "LOT_SIZE", "minQty": plain(units_to_decimal(profile.lot)),
         "maxQty": "90000000000.00000000", "stepSize": plain(units_to_decimal(profile.lot))},
    ]


def symbol_info(symbol: str) -> dict[str, object]:
    base, quote = split_symbol(symbol)
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _filters(profile_for(symbol)),
        "permissionSets": [["SPOT"]],
    }


def exchange_info(symbols: list[str], server_time_ms: int, weight_limit: int) -> dict[str, object]:
    limits = [dict(item) for item in RATE_LIMITS]
    limits[0]["limit"] = weight_limit
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": limits,
        "exchangeFilters": [],
        "symbols": [symbol_info(symbol) for symbol in symbols],
    }
