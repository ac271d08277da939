"""Binance REST endpoints of the streamer: symbol checks and gap recovery.

The rate-limit manners (`X-MBX-USED-WEIGHT-1M`, 429/418 with `Retry-After`, back-off) live in
the common layer, `binance_etl.rest`, which the batch's klines client shares.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from binance_etl.ingest.trade import FrameError, Trade, parse_rest_trade
from binance_etl.rest import DEFAULT_WEIGHT_LIMIT, WEIGHT_HEADER, RateLimitedRest, RestError

__all__ = ["DEFAULT_WEIGHT_LIMIT", "PAGE_LIMIT", "WEIGHT_HEADER", "BinanceRest", "RestError"]

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000  # Binance's maximum for /trades and /historicalTrades


class BinanceRest(RateLimitedRest):
    """The few Binance REST endpoints the streamer needs (rate limits: `binance_etl.rest`)."""

    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, client=client, **kwargs)
        self.historical_allowed = True

    async def exchange_info(self, attempts: int = 2) -> dict[str, Any]:
        info = await self.get("/api/v3/exchangeInfo", attempts=attempts)
        if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
            raise RestError("exchangeInfo: unexpected document")
        for limit in info.get("rateLimits", []):
            if (
                isinstance(limit, dict)
                and limit.get("rateLimitType") == "REQUEST_WEIGHT"
                and limit.get("interval") == "MINUTE"
                and limit.get("intervalNum", 1) == 1
                and isinstance(limit.get("limit"), int)
            ):
                self.weight_limit = limit["limit"]
        return info

    async def unknown_symbols(self, symbols: list[str]) -> list[str]:
        """The symbols exchangeInfo does not list as trading."""
        info = await self.exchange_info()
        trading = {
            entry.get("symbol")
            for entry in info["symbols"]
            if isinstance(entry, dict) and entry.get("status", "TRADING") == "TRADING"
        }
        return [symbol for symbol in symbols if symbol not in trading]

    async def trades_from(self, symbol: str, from_id: int, limit: int = PAGE_LIMIT) -> list[Trade]:
        """Trades with id >= from_id, ascending, at most `limit` (<= 1000).

        `/api/v3/historicalTrades` when the server allows it; otherwise (401/403) the recent
        `/api/v3/trades` page, of which only ids >= from_id are kept.
        """
        limit = max(1, min(limit, PAGE_LIMIT))
        rows: Any
        if self.historical_allowed:
            try:
                rows = await self.get(
                    "/api/v3/historicalTrades",
                    {"symbol": symbol, "fromId": from_id, "limit": limit},
                )
            except RestError as error:
                if error.status not in (401, 403, 404):
                    raise
                logger.warning("historicalTrades not allowed (%s); using /api/v3/trades", error)
                self.historical_allowed = False
        if not self.historical_allowed:
            rows = await self.get("/api/v3/trades", {"symbol": symbol, "limit": PAGE_LIMIT})
        if not isinstance(rows, list):
            raise RestError(f"trades of {symbol}: expected a list")
        trades = []
        for row in rows:
            try:
                trade = parse_rest_trade(symbol, row)
            except FrameError as error:
                raise RestError(f"trades of {symbol}: malformed row {row!r}: {error}") from None
            if trade.trade_id >= from_id:
                trades.append(trade)
        trades.sort(key=lambda trade: trade.trade_id)
        return trades[:limit]
