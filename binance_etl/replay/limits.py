"""REST request weight per IP and minute, 429 + Retry-After, and 418 bans for clients that
come back before Retry-After has passed — the rules of Binance's spot REST API."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    """`status` None means serve the request; otherwise answer 429 or 418 with Retry-After."""

    status: int | None
    used_weight: int
    retry_after: int = 0
    banned_until_ms: int = 0


class WeightLimiter:
    """Counts request weight per client IP in the current UTC minute.

    `fail_every` (a fault) answers every Nth weighted request with 429 even under the limit.
    A client that sends anything before its Retry-After has passed is banned with 418.
    """

    def __init__(self, limit: int = 6000, *, fail_every: int | None = None, retry_after: int = 1,
                 ban_seconds: int = 120, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.fail_every = fail_every
        self.retry_after = retry_after
        self.ban_seconds = ban_seconds
        self._clock = clock
        self._minute = -1
        self._used: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._banned_until: dict[str, float] = {}
        self._requests = 0
        self.rejected_429 = 0
        self.rejected_418 = 0

    def used(self, ip: str) -> int:
        self._roll(self._clock())
        return self._used.get(ip, 0)

    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._used.clear()

    def check(self, ip: str, weight: int) -> Verdict:
        now = self._clock()
        self._roll(now)
        banned_until = self._banned_until.get(ip, 0.0)
        if banned_until <= now and self._not_before.get(ip, 0.0) > now:
            # Came back before Retry-After: Binance answers with an IP ban (418).
            banned_until = now + self.ban_seconds
            self._banned_until[ip] = banned_until
        used = self._used.get(ip, 0) + weight
        self._used[ip] = used
        if banned_until > now:
            self.rejected_418 += 1
            return Verdict(418, used, math.ceil(banned_until - now), int(banned_until * 1000))
        self._requests += 1
        if used > self.limit:
            return self._too_many(ip, now, used, math.ceil(60 - now % 60))
        if self.fail_every and self._requests % self.fail_every == 0:
            return self._too_many(ip, now, used, self.retry_after)
        return Verdict(None, used)

    def _too_many(self, ip: str, now: float, used: int, retry_after: int) -> Verdict:
        self.rejected_429 += 1
        self._not_before[ip] = now + retry_after
        return Verdict(429, used, retry_after)
