"""The live source's offsets: per symbol, the set of trade ids already handed to the query.

Pure logic, no Spark and no database (unit-tested on its own). An offset is a small JSON-able
dict, one entry per symbol, as Spark's Kafka source keeps one per topic partition:

    {"since": "2025-09-09T00:00:00+00:00",
     "symbols": {"BTCUSDT": [[100, 5000, true], [5100, 7000, false]]}}

Each `[lo, hi, anchored]` is a half-open run of trade ids `[lo, hi)` that are ALL stored (ids
are consecutive per symbol on Binance, and a stored trade never changes or disappears while
its day partition is kept). Runs are disjoint, sorted, and merged when adjacent; the gaps
between them are ids not stored yet (the stream lost them and REST has not filled them yet).
`anchored` says that the id just below `lo` is stored but older than `since` (out of scope), so
no trade of the scope can still arrive below `lo`.

A micro-batch from offset A to offset B reads exactly the ids in B minus A: runs of ids that
were all stored when B was planned, so a restart that replays the batch reads the very same
rows. A late trade (a filled gap, a backfilled day) lands in a gap, becomes part of a later
offset's runs, and is read by exactly one later batch; a symbol with an open gap holds back
nothing, not even its own later trades.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# [lo, hi) and the anchored flag
Run = tuple[int, int, bool]
MINUTE = timedelta(minutes=1)


def normalise(runs: Iterable[Sequence[int | bool]]) -> list[Run]:
    """Sorted, merged runs (adjacent ones join, keeping the lower one's anchored flag); an
    overlap means an id was counted twice, which is a bug: it raises."""
    ordered = sorted((int(r[0]), int(r[1]), bool(r[2])) for r in runs)
    merged: list[Run] = []
    for lo, hi, anchored in ordered:
        if hi <= lo:
            raise ValueError(f"empty or reversed id run [{lo}, {hi})")
        if merged and lo < merged[-1][1]:
            raise ValueError(f"id runs overlap: {merged[-1][:2]} and {(lo, hi)}")
        if merged and lo == merged[-1][1]:
            merged[-1] = (merged[-1][0], hi, merged[-1][2])
        else:
            merged.append((lo, hi, anchored))
    return merged


def gaps(runs: Sequence[Run]) -> list[tuple[int | None, int | None]]:
    """The id regions outside the runs, as [lo, hi) with None for unbounded: where new trades
    of the symbol can still appear. No runs: the whole id line."""
    if not runs:
        return [(None, None)]
    regions: list[tuple[int | None, int | None]] = [(None, runs[0][0])]
    regions.extend((runs[i][1], runs[i + 1][0]) for i in range(len(runs) - 1))
    regions.append((runs[-1][1], None))
    return regions


def islands(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct ids → maximal runs of consecutive ids as [lo, hi) (the SQL source does
    the same with `trade_id - row_number()`; this is its reference)."""
    out: list[tuple[int, int]] = []
    for trade_id in ids:
        if out and trade_id == out[-1][1]:
            out[-1] = (out[-1][0], trade_id + 1)
        elif out and trade_id < out[-1][1]:
            raise ValueError(f"ids not sorted and distinct at {trade_id}")
        else:
            out.append((trade_id, trade_id + 1))
    return out


def subtract(end: Sequence[Run], start: Sequence[Run]) -> list[Run]:
    """The ids of `end` that are not in `start`, as runs (anchored only where a run of `end`
    begins). `start` must be contained in `end`: offsets only grow."""
    pieces: list[Run] = []
    for lo, hi, anchored in end:
        cursor = lo
        for s_lo, s_hi, _ in start:
            if s_hi <= lo or s_lo >= hi:
                continue
            if s_lo < lo or s_hi > hi:
                raise ValueError(f"start run [{s_lo}, {s_hi}) is not inside end run [{lo}, {hi})")
            if s_lo > cursor:
                pieces.append((cursor, s_lo, anchored and cursor == lo))
            cursor = s_hi
        if cursor < hi:
            pieces.append((cursor, hi, anchored and cursor == lo))
    covered = sum(hi - lo for lo, hi, _ in start)
    inside = sum(hi - lo for lo, hi, _ in end) - sum(hi - lo for lo, hi, _ in pieces)
    if covered != inside:
        raise ValueError("start offset has ids that end offset lacks: offsets must only grow")
    return pieces


def split(pieces: Sequence[Run], max_ids: int) -> list[Run]:
    """Pieces cut into chunks of at most `max_ids` ids (one Spark task each); only the first
    chunk of a piece keeps its anchored flag."""
    if max_ids < 1:
        raise ValueError("max_ids must be positive")
    out: list[Run] = []
    for lo, hi, anchored in pieces:
        for chunk_lo in range(lo, hi, max_ids):
            out.append((chunk_lo, min(hi, chunk_lo + max_ids), anchored and chunk_lo == lo))
    return out


@dataclass(frozen=True)
class SourceOffset:
    """The whole offset: the scope's start time and each symbol's runs."""

    since: datetime
    symbols: dict[str, list[Run]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "since": self.since.astimezone(UTC).isoformat(),
            "symbols": {s: [[lo, hi, anchored] for lo, hi, anchored in runs]
                        for s, runs in sorted(self.symbols.items())},
        }

    @classmethod
    def from_json(cls, data: dict) -> SourceOffset:
        since = datetime.fromisoformat(str(data["since"]))
        if since.tzinfo is None:
            raise ValueError("offset 'since' must carry a time zone")
        return cls(since.astimezone(UTC),
                   {str(s): normalise(runs) for s, runs in dict(data["symbols"]).items()})

    def with_runs(self, symbol: str, new: Iterable[Run]) -> SourceOffset:
        symbols = dict(self.symbols)
        symbols[symbol] = normalise([*symbols.get(symbol, []), *new])
        return SourceOffset(self.since, symbols)

    def size(self) -> int:
        return sum(hi - lo for runs in self.symbols.values() for lo, hi, _ in runs)


def new_pieces(start: SourceOffset, end: SourceOffset) -> dict[str, list[Run]]:
    """Per symbol, the runs a micro-batch from `start` to `end` reads."""
    if start.since != end.since:
        raise ValueError(f"offsets of different scopes: {start.since} and {end.since}")
    out: dict[str, list[Run]] = {}
    for symbol, runs in end.symbols.items():
        pieces = subtract(runs, start.symbols.get(symbol, []))
        if pieces:
            out[symbol] = pieces
    return out


def default_since(now: datetime) -> datetime:
    """A new query's scope starts at the beginning of the previous UTC day: today's bars and
    yesterday's, which the next batch publishes and compares."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1)


@dataclass(frozen=True)
class Coverage:
    """One counted run with the times of its first and last trade (the sink keeps these)."""

    lo: int
    hi: int
    anchored: bool
    first_time: datetime
    last_time: datetime


def is_complete(minute: datetime, runs: Iterable[Coverage]) -> bool:
    """The contract's `complete`: the minute has ended and every trade id of its symbol up to a
    later trade is counted. Ids are in time order per symbol, so one counted run that starts
    before the minute (or is anchored at the scope's start) and reaches a trade at or after the
    minute's end holds all of the minute's trades. The sink's SQL states the same rule."""
    end = minute + MINUTE
    return any(
        run.last_time >= end
        and run.first_time < end
        and (run.anchored or run.first_time < minute)
        for run in runs
    )
