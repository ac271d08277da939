"""Capped exponential back-off with jitter."""

from __future__ import annotations

import random

import pytest

from binance_etl.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_clients_and_reset_starts_over() -> None:
    delays = {Backoff(1.0, 30.0, random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20  # no lock-step reconnects
    backoff = Backoff(1.0, 30.0, random.Random(1))
    for _ in range(10):
        backoff.next_delay()
    assert backoff.ceiling() == 30.0
    backoff.reset()
    assert backoff.ceiling() == 1.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(0.1, 5.0)
    backoff.attempts = 10_000
    assert backoff.next_delay() <= 5.0


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(2.0, 1.0)
