"""Trade-id arithmetic: gaps, duplicates, late arrivals, REST page requests."""

from __future__ import annotations

import pytest

from binance_etl.ingest.gaps import SymbolGaps, missing_between, page_requests


def test_missing_between() -> None:
    assert missing_between(10, 11) is None
    assert missing_between(10, 14) == (11, 13)
    assert missing_between(10, 10) is None
    assert missing_between(10, 3) is None


def test_page_requests_cover_a_range_in_pages_of_at_most_1000() -> None:
    assert page_requests(1, 2500) == [(1, 1000), (1001, 1000), (2001, 500)]
    assert page_requests(7, 7) == [(7, 1)]
    assert page_requests(8, 7) == []
    pages = page_requests(100, 5099, limit=1000)
    assert sum(limit for _, limit in pages) == 5000


def test_consecutive_ids_and_duplicates() -> None:
    state = SymbolGaps()
    assert [state.observe(i) for i in (5, 6, 7)] == [True, True, True]
    assert state.observe(6) is False
    assert state.observe(7) is False
    assert (state.last_id, state.missing, state.found) == (7, [], 0)


def test_jump_records_a_gap_and_late_ids_fill_it_once() -> None:
    state = SymbolGaps()
    state.observe(10)
    assert state.observe(15) is True
    assert state.missing == [(11, 14)]
    assert state.found == 4
    assert state.observe(12) is True  # arrives late (other connection, REST page)
    assert state.missing == [(11, 11), (13, 14)]
    assert state.observe(12) is False  # the second copy is a duplicate
    for trade_id in (11, 13, 14):
        assert state.observe(trade_id) is True
    assert (state.missing, state.filled, state.missing_count) == ([], 4, 0)


def test_next_request_prefers_missing_then_catch_up() -> None:
    state = SymbolGaps()
    assert state.next_request() is None
    state.observe(100)
    state.catch_up = True
    assert state.next_request() == (101, 1000)
    state.observe(3105)
    assert state.next_request() == (101, 1000)
    state.missing = [(101, 150)]
    assert state.next_request(limit=1000) == (101, 50)


def test_one_request_covers_scattered_holes_within_a_page() -> None:
    state = SymbolGaps()
    state.missing = [(10, 10), (15, 15), (400, 420), (1005, 1100), (5000, 5001)]
    assert state.next_request(limit=1000) == (10, 1000)  # 10..1009 holds four ranges
    state.missing = [(10, 10), (15, 15)]
    assert state.next_request(limit=1000) == (10, 6)


def test_abandon_gives_up_on_part_of_a_range() -> None:
    state = SymbolGaps()
    state.observe(1)
    state.observe(100)  # missing 2..99
    assert state.abandon(2, 49) == 48
    assert state.missing == [(50, 99)]
    assert state.abandoned == 48
    assert state.abandon(200, 300) == 0


def test_add_missing_from_the_database_refuses_overlaps() -> None:
    state = SymbolGaps()
    state.observe(100)  # the last stored id
    state.add_missing(50, 60)
    state.add_missing(10, 20)
    assert state.missing == [(10, 20), (50, 60)]
    assert state.found == 22
    assert state.observe(15) is True  # a hole filled by REST
    assert state.missing == [(10, 14), (16, 20), (50, 60)]
    assert state.observe(30) is False  # stored already, not missing
    with pytest.raises(ValueError, match="overlaps"):
        state.add_missing(55, 70)
