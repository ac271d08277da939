"""The batching writer against the real PostgreSQL: exact values, idempotency, partitions,
and retries across a server restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from binance_etl.db import connect
from binance_etl.ingest.trade import Trade, datetime_to_ms
from binance_etl.ingest.writer import BatchWriter, Chunk
from tests.plugins.ingest import DedicatedPostgres, stored_trades

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=123_000)


def trades(first: int, count: int, when: datetime = NOW) -> list[Trade]:
    return [
        Trade("BTCUSDT", i, Decimal("87123.45000000") + Decimal(i) / 10**8,
              Decimal("0.00000001") * (i + 1), when + timedelta(milliseconds=i), when,
              i % 3 == 0)
        for i in range(first, first + count)
    ]


def test_batches_are_exact_idempotent_and_create_past_partitions(ingest_db: str) -> None:
    old_day = datetime(2019, 3, 4, 12, 0, 0, 1_000, tzinfo=UTC)
    writer = BatchWriter(ingest_db, batch_max_trades=700)
    writer.start()
    first = trades(1, 2000)
    writer.submit(Chunk(first, [1] * len(first)))
    writer.submit(Chunk(trades(1500, 1000), []))  # overlaps 1500..2000: a gap fill racing
    writer.submit(Chunk(trades(5000, 3, old_day), []))  # a day with no partition yet
    assert writer.close(30)
    assert writer.failed is None
    stats = writer.stats
    assert (stats.committed, stats.inserted) == (3003, 2502)
    assert stats.batches >= 5  # 3003 trades in batches of at most 700
    assert stats.conflicts >= 1  # the overlapping batch went the staged way
    assert sum(stats.lag_ms.values()) == 2000  # one lag figure per stream trade

    rows = stored_trades(ingest_db, "BTCUSDT")
    expected = trades(1, 2499) + trades(5000, 3, old_day)
    assert rows == [(t.trade_id, t.price, t.quantity,
                     datetime_to_ms(t.trade_time), t.is_buyer_maker) for t in expected]
    with connect(ingest_db, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('trades_20190304') IS NOT NULL").fetchone() == (
            True,)
        assert conn.execute(
            "SELECT count(*) FROM trades_20190304").fetchone() == (3,)
        assert conn.execute(
            "SELECT count(*) FROM trades WHERE event_time = %s", (NOW,)).fetchone() == (2499,)


def test_writer_retries_across_a_database_restart(dedicated_pg: DedicatedPostgres) -> None:
    writer = BatchWriter(dedicated_pg.url, batch_max_trades=1000, retry_max_seconds=1.0)
    writer.start()
    writer.submit(Chunk(trades(1, 1000), []))
    while writer.stats.committed < 1000:
        assert writer.failed is None
        writer._stopping.wait(0.02)
    dedicated_pg.server.restart()  # the writer's connection dies with it
    writer.submit(Chunk(trades(1001, 1000), []))
    assert writer.close(60)
    assert writer.failed is None
    assert writer.stats.retries >= 1
    assert writer.pending == 0
    assert [r[0] for r in stored_trades(dedicated_pg.url, "BTCUSDT")] == list(range(1, 2001))
