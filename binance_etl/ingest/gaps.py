"""Per-symbol trade-id bookkeeping: which ids were accepted, which are missing.

Binance trade ids are consecutive per symbol, so a jump in ids is a gap and an id at or below
the last one is either a duplicate (reconnect overlap, a REST page) or the late arrival of an
id that is still missing. All of this runs on the event loop thread only.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

Range = tuple[int, int]  # inclusive [first, last]


def missing_between(previous_id: int, next_id: int) -> Range | None:
    """The ids strictly between two observed ids, or None when they are adjacent or out of order."""
    if next_id > previous_id + 1:
        return (previous_id + 1, next_id - 1)
    return None


def page_requests(first: int, last: int, limit: int = 1000) -> list[tuple[int, int]]:
    """(fromId, limit) requests covering [first, last] with pages of at most `limit` trades."""
    if first > last:
        return []
    return [(start, min(limit, last - start + 1)) for start in range(first, last + 1, limit)]


@dataclass
class SymbolGaps:
    """Accepted-id frontier and missing ranges of one symbol."""

    last_id: int | None = None
    missing: list[Range] = field(default_factory=list)  # sorted, disjoint
    catch_up: bool = False  # fetch everything after last_id from REST (after a reconnect)
    found: int = 0  # ids found missing
    filled: int = 0  # missing ids that arrived later (stream or REST)
    abandoned: int = 0  # missing ids that REST could not provide

    def observe(self, trade_id: int) -> bool:
        """Record an arriving id; True when it is new and must be written."""
        last = self.last_id
        if last is None or trade_id == last + 1:
            self.last_id = trade_id
            return True
        if trade_id > last:
            self.missing.append((last + 1, trade_id - 1))
            self.found += trade_id - 1 - last
            self.last_id = trade_id
            return True
        return self._take_missing(trade_id)

    def _take_missing(self, trade_id: int) -> bool:
        index = bisect.bisect_right(self.missing, (trade_id, 1 << 62)) - 1
        if index < 0:
            return False
        first, last = self.missing[index]
        if not first <= trade_id <= last:
            return False
        pieces = [(a, b) for a, b in ((first, trade_id - 1), (trade_id + 1, last)) if a <= b]
        self.missing[index : index + 1] = pieces
        self.filled += 1
        return True

    def add_missing(self, first: int, last: int) -> None:
        """Ids known to be missing (e.g. holes found in the database at start-up)."""
        if first > last:
            return
        for a, b in list(self.missing):
            if a <= last and first <= b:
                raise ValueError(f"range {first}-{last} overlaps a missing range {a}-{b}")
        bisect.insort(self.missing, (first, last))
        self.found += last - first + 1

    def abandon(self, first: int, last: int) -> int:
        """Give up on ids in [first, last] that are still missing; returns how many."""
        kept: list[Range] = []
        dropped = 0
        for a, b in self.missing:
            lo, hi = max(a, first), min(b, last)
            if lo > hi:
                kept.append((a, b))
                continue
            dropped += hi - lo + 1
            kept.extend(r for r in ((a, lo - 1), (hi + 1, b)) if r[0] <= r[1])
        self.missing = sorted(kept)
        self.abandoned += dropped
        return dropped

    @property
    def missing_count(self) -> int:
        return sum(b - a + 1 for a, b in self.missing)

    def next_request(self, limit: int = 1000) -> tuple[int, int] | None:
        """The next REST page to fetch: (fromId, limit), lowest missing ids first.

        One page covers every missing range that starts within `limit` ids of the lowest one,
        so scattered single-id holes (a corrupt frame here and there) cost one request per
        thousand ids, not one each.
        """
        if self.missing:
            first = self.missing[0][0]
            window_end = first + limit - 1
            last = max(min(b, window_end) for a, b in self.missing if a <= window_end)
            return (first, last - first + 1)
        if self.catch_up and self.last_id is not None:
            return (self.last_id + 1, limit)
        return None
