"""REST weight accounting, 429 + Retry-After, and 418 bans."""

from __future__ import annotations

from binance_etl.replay.limits import WeightLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_weight_adds_up_and_429_lasts_until_the_next_minute() -> None:
    clock = Clock(6000.0 * 60 + 50)  # 50 s into a minute
    limiter = WeightLimiter(limit=100, ban_seconds=30, clock=clock)
    assert [limiter.check("a", 25).status for _ in range(4)] == [None] * 4
    assert limiter.used("a") == 100
    verdict = limiter.check("a", 25)
    assert (verdict.status, verdict.retry_after, verdict.used_weight) == (429, 10, 125)
    assert limiter.check("b", 25).status is None  # counted per IP
    clock.now += 10  # a new minute: the counter starts again
    assert limiter.check("a", 1).status is None
    assert limiter.used("a") == 1


def test_coming_back_before_retry_after_earns_a_ban() -> None:
    clock = Clock(1000.0)
    limiter = WeightLimiter(limit=6000, fail_every=2, retry_after=3, ban_seconds=20, clock=clock)
    assert limiter.check("a", 1).status is None
    assert limiter.check("a", 1).status == 429
    clock.now += 1
    banned = limiter.check("a", 1)
    assert (banned.status, banned.retry_after) == (418, 20)
    clock.now += 19.5
    assert limiter.check("a", 1).status == 418
    clock.now += 1
    assert limiter.check("a", 1).status is None
    assert (limiter.rejected_429, limiter.rejected_418) == (1, 2)
