"""Capped exponential back-off with jitter, for reconnects and database retries."""

from __future__ import annotations

import random


class Backoff:
    """Delays base, 2·base, 4·base … capped at `cap`, each drawn from [d/2, d] ("equal jitter").

    Half the delay is kept so that a flapping server is never hammered, the other half is
    random so that many clients do not reconnect in lock-step. `reset()` after a success.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The un-jittered delay of the next attempt."""
        return min(self.cap, self.base * 2.0 ** min(self.attempts, 62))

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.attempts += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0
