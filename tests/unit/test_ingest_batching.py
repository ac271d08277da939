"""Batch bounds of the writer: chunks merged and split to at most BATCH_MAX_TRADES, in order.

Exercises the writer's own batching (`_next_batch`) without a database: no thread is started.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from binance_etl.ingest.trade import Trade
from binance_etl.ingest.writer import BatchWriter, Chunk, lag_percentile

T0 = datetime(2025, 9, 10, tzinfo=UTC)


def chunk(first: int, count: int, stream: bool = True) -> Chunk:
    trades = [Trade("BTCUSDT", i, Decimal("1.00000000"), Decimal("2.00000000"), T0, None, False)
              for i in range(first, first + count)]
    return Chunk(trades, list(range(first, first + count)) if stream else [])


def drain(writer: BatchWriter) -> list[Chunk]:
    batches = []
    while True:
        batch, done = writer._next_batch()
        if batch is not None:
            batches.append(batch)
        if done:
            return batches


def test_chunks_are_merged_up_to_the_bound_and_split_beyond_it() -> None:
    writer = BatchWriter("postgresql://unused", batch_max_trades=1000)
    for first, count in ((0, 300), (300, 300), (600, 900), (1500, 2600), (4100, 1)):
        writer.submit(chunk(first, count))
    writer._queue.put(None)
    batches = drain(writer)
    assert [len(b.trades) for b in batches] == [1000, 1000, 1000, 1000, 101]
    ids = [t.trade_id for b in batches for t in b.trades]
    assert ids == list(range(4101))
    for batch in batches:  # event times stay aligned with their trades across splits
        assert batch.event_ms == [t.trade_id for t in batch.trades]
    assert writer.pending == 4101  # nothing committed: pending counts what is at risk


def test_rest_chunks_carry_no_event_times() -> None:
    writer = BatchWriter("postgresql://unused", batch_max_trades=5)
    writer.submit(chunk(0, 3, stream=False))
    writer.submit(chunk(3, 4))
    writer._queue.put(None)
    batches = drain(writer)
    assert [len(b.trades) for b in batches] == [5, 2]
    assert batches[0].event_ms == [3, 4]
    assert batches[1].event_ms == [5, 6]


def test_an_empty_chunk_is_not_queued() -> None:
    writer = BatchWriter("postgresql://unused")
    writer.submit(Chunk())
    assert writer.pending == 0
    assert writer._queue.empty()


def test_lag_percentile() -> None:
    from collections import Counter

    histogram = Counter({5: 50, 10: 45, 200: 5})
    assert lag_percentile(histogram, 0.5) == 5.0
    assert lag_percentile(histogram, 0.95) == 10.0
    assert lag_percentile(histogram, 0.99) == 200.0
    assert lag_percentile(Counter(), 0.5) is None
