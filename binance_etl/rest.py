"""A rate-limited Binance REST client (httpx, asyncio), shared by the streamer and the batch.

Respects Binance's rate limits: reads `X-MBX-USED-WEIGHT-1M` on every response and waits for
the next minute when the budget is nearly spent; on 429 (and 418, an IP ban) waits the
`Retry-After` seconds before asking again, and holds every other request of the client back
meanwhile (asking during it is what earns a 418). Transient failures (connection errors, 5xx)
are retried with capped back-off. One request at a time per client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from binance_etl.backoff import Backoff

logger = logging.getLogger(__name__)

DEFAULT_WEIGHT_LIMIT = 6000  # REQUEST_WEIGHT per minute, until exchangeInfo says otherwise
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class RestError(RuntimeError):
    """A REST request that failed for good (after retries, or a client error)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedRest:
    """GET JSON documents from Binance's REST API within its request-weight rules."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        weight_limit: int = DEFAULT_WEIGHT_LIMIT,
        weight_reserve: float = 0.2,
        max_attempts: int = 8,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=10.0)
        self.weight_limit = weight_limit
        self.weight_reserve = weight_reserve
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self.used_weight = 0
        self._weight_minute = 0
        self._blocked_until = 0.0  # time.monotonic() before which no request may go out
        # One request at a time: a request already in flight when another one is answered 429
        # reaches the server "after" the 429 and earns a 418 ban.
        self._one_at_a_time = asyncio.Lock()
        self.requests = 0
        self.rate_limited = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _respect_budget(self) -> None:
        # Retry-After binds the whole client (Binance counts per IP): every task waits it out,
        # not only the one that was told; asking during it earns a 418 ban.
        while (blocked := self._blocked_until - self._monotonic()) > 0:
            await self._sleep(blocked)
        now = self._clock()
        minute = int(now // 60)
        if minute != self._weight_minute:
            return  # the server's one-minute window has rolled over
        if self.used_weight >= self.weight_limit * (1 - self.weight_reserve):
            wait = 60 - now % 60 + 0.1
            logger.warning(
                "REST weight %d of %d used this minute; pausing %.1fs",
                self.used_weight, self.weight_limit, wait,
            )
            await self._sleep(wait)

    def _note_weight(self, response: httpx.Response) -> None:
        header = response.headers.get(WEIGHT_HEADER)
        if header is not None and header.isdigit():
            self.used_weight = int(header)
            self._weight_minute = int(self._clock() // 60)

    async def get(
        self, path: str, params: dict[str, Any] | None = None, attempts: int | None = None
    ) -> Any:
        """GET a JSON document, honouring rate limits; raises RestError when it cannot."""
        backoff = Backoff(0.5, 30.0)
        url = f"{self.base_url}{path}"
        attempts = attempts or self.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                async with self._one_at_a_time:
                    await self._respect_budget()
                    self.requests += 1
                    response = await self._client.get(url, params=params)
            except httpx.TransportError as error:
                if attempt == attempts:
                    raise RestError(f"GET {path}: {error!r}") from error
                await self._sleep(backoff.next_delay())
                continue
            self._note_weight(response)
            status = response.status_code
            if status in (418, 429):
                self.rate_limited += 1
                retry_after = response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else 60.0
                logger.warning("REST %s answered %d; waiting Retry-After %.0fs", path, status, wait)
                self._blocked_until = max(self._blocked_until, self._monotonic() + wait)
                continue
            if status >= 500:
                if attempt == attempts:
                    raise RestError(f"GET {path}: HTTP {status}", status)
                await self._sleep(backoff.next_delay())
                continue
            if status >= 400:
                raise RestError(f"GET {path}: HTTP {status} {response.text[:200]}", status)
            return response.json()
        raise RestError(f"GET {path}: gave up after {attempts} attempts")
