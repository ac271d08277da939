"""The live source's offset logic without Spark or PostgreSQL: id runs, what a micro-batch
reads, replay, late trades, and the `complete` rule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from live.offsets import (
    Coverage,
    SourceOffset,
    default_since,
    gaps,
    is_complete,
    islands,
    new_pieces,
    normalise,
    split,
    subtract,
)
from live.sink import Counted, Piece, classify, merge_counted
from live.source import per_symbol_budget

SINCE = datetime(2025, 9, 9, tzinfo=UTC)
T0 = datetime(2025, 9, 10, 12, 0, tzinfo=UTC)


def test_normalise_merges_adjacent_runs_and_refuses_overlaps() -> None:
    assert normalise([[10, 20, False], [0, 10, True], [30, 40, False]]) == [
        (0, 20, True), (30, 40, False)]
    with pytest.raises(ValueError, match="overlap"):
        normalise([[0, 10, False], [5, 15, False]])
    with pytest.raises(ValueError, match="empty"):
        normalise([[5, 5, False]])


def test_gaps_are_the_complement_of_the_runs() -> None:
    assert gaps([]) == [(None, None)]
    assert gaps([(10, 20, False), (30, 40, False)]) == [(None, 10), (20, 30), (40, None)]


def test_islands_group_consecutive_ids() -> None:
    assert islands([1, 2, 3, 7, 8, 10]) == [(1, 4), (7, 9), (10, 11)]
    assert islands([]) == []
    with pytest.raises(ValueError, match="sorted"):
        islands([3, 2])


def test_subtract_gives_exactly_the_new_ids() -> None:
    end = [(0, 100, True), (150, 200, False)]
    start = [(10, 20, False), (150, 160, False)]
    assert subtract(end, start) == [(0, 10, True), (20, 100, False), (160, 200, False)]
    with pytest.raises(ValueError, match="only grow"):
        subtract([(0, 10, False)], [(20, 30, False)])


def test_split_cuts_pieces_and_keeps_anchored_on_the_first_chunk() -> None:
    assert split([(0, 25, True), (30, 35, False)], 10) == [
        (0, 10, True), (10, 20, False), (20, 25, False), (30, 35, False)]


def test_offsets_round_trip_through_json() -> None:
    offset = SourceOffset(SINCE, {"BTCUSDT": [(1, 5, False), (7, 9, True)]})
    again = SourceOffset.from_json(offset.to_json())
    assert again == offset
    assert again.size() == 6
    with pytest.raises(ValueError, match="time zone"):
        SourceOffset.from_json({"since": "2025-09-09T00:00:00", "symbols": {}})


def test_a_simulated_stream_with_late_trades_reads_every_id_exactly_once() -> None:
    """Ids arrive out of order (gaps filled late, a backfilled block); each planning step takes
    the runs of what is stored; the batches' pieces partition the stored ids exactly, and
    replaying a batch (the same start and end) gives the same pieces."""
    rng = random.Random(7)
    ids = list(range(1000, 6000))
    arrival = ids[:]
    rng.shuffle(arrival)  # the worst case: any order at all
    stored: set[int] = set()
    offset = SourceOffset(SINCE)
    read: list[int] = []
    for step in range(0, len(arrival), 250):
        stored.update(arrival[step:step + 250])
        runs = offset.symbols.get("BTCUSDT", [])
        covered = {i for lo, hi, _ in runs for i in range(lo, hi)}
        fresh = islands(sorted(stored - covered))
        end = offset.with_runs("BTCUSDT", [(lo, hi, False) for lo, hi in fresh])
        pieces = new_pieces(offset, end)
        assert new_pieces(offset, end) == pieces  # a replay reads the same ranges
        for lo, hi, _ in pieces.get("BTCUSDT", []):
            assert all(i in stored for i in range(lo, hi))  # only stored ids are planned
            read.extend(range(lo, hi))
        offset = end
    assert sorted(read) == ids  # every id once, none twice
    assert offset.symbols["BTCUSDT"] == [(1000, 6000, False)]  # all gaps closed: one run


def test_a_symbol_with_an_open_gap_does_not_hold_back_another() -> None:
    start = SourceOffset(SINCE, {"BTCUSDT": [(0, 10, False)], "ETHUSDT": [(0, 10, False)]})
    end = start.with_runs("BTCUSDT", [(20, 30, False)]).with_runs("ETHUSDT", [(10, 50, False)])
    assert new_pieces(start, end) == {"BTCUSDT": [(20, 30, False)], "ETHUSDT": [(10, 50, False)]}


def test_offsets_of_different_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="scopes"):
        new_pieces(SourceOffset(SINCE), SourceOffset(SINCE + timedelta(days=1)))


def test_default_since_is_the_start_of_the_previous_utc_day() -> None:
    assert default_since(datetime(2025, 9, 10, 13, 5, tzinfo=UTC)) == SINCE


def minute(offset: int) -> datetime:
    return T0 + timedelta(minutes=offset)


def run(first: datetime, last: datetime, anchored: bool = False) -> Coverage:
    return Coverage(0, 1, anchored, first, last)


def test_a_bar_is_complete_only_when_a_counted_run_spans_its_minute() -> None:
    spanning = [run(minute(-1), minute(2))]
    assert is_complete(minute(0), spanning)
    assert is_complete(minute(1), spanning)
    assert not is_complete(minute(2), spanning)  # no later trade counted yet
    # the run starts inside the minute: an earlier id of the minute may be missing
    assert not is_complete(minute(0), [run(minute(0) + timedelta(seconds=5), minute(2))])
    # ...unless the run is anchored at the scope's start (the id below it is out of scope)
    assert is_complete(minute(0), [run(minute(0) + timedelta(seconds=5), minute(2), True)])
    # a gap inside the minute: two runs, neither spans it
    split_runs = [run(minute(-1), minute(0) + timedelta(seconds=10)),
                  run(minute(0) + timedelta(seconds=20), minute(3))]
    assert not is_complete(minute(0), split_runs)
    assert is_complete(minute(1), split_runs)


def piece(lo: int, hi: int) -> Piece:
    return Piece("BTCUSDT", lo, hi, False, T0, T0, hi - lo)


def test_the_sink_applies_new_runs_skips_a_replay_and_refuses_a_partial_overlap() -> None:
    counted = {"BTCUSDT": [Counted(0, 100, False, T0, T0)]}
    assert classify([piece(100, 150)], counted) == "new"
    assert classify([piece(10, 50), piece(60, 100)], counted) == "applied"
    with pytest.raises(RuntimeError, match="overlaps"):
        classify([piece(90, 120)], counted)
    with pytest.raises(RuntimeError, match="overlaps"):
        classify([piece(10, 50), piece(100, 120)], counted)


def test_counted_runs_merge_and_keep_the_outer_times() -> None:
    later = T0 + timedelta(seconds=30)
    runs = merge_counted([Counted(0, 100, True, T0, T0)],
                         [Piece("BTCUSDT", 100, 150, False, later, later, 50),
                          Piece("BTCUSDT", 200, 210, False, later, later, 10)])
    assert runs == [Counted(0, 150, True, T0, later), Counted(200, 210, False, later, later)]


def test_spark_read_limits_become_a_per_symbol_budget() -> None:
    from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows, ReadMinRows

    assert per_symbol_budget(ReadMaxRows(1_000_000), 2) == 500_000
    assert per_symbol_budget(ReadMaxRows(3), 5) == 1
    assert per_symbol_budget(ReadAllAvailable(), 2) > 10**15
    with pytest.raises(ValueError, match="unsupported"):
        per_symbol_budget(ReadMinRows(5), 2)
