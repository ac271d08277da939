"""Raw-table migrations: idempotent, day partitions ahead and on demand, retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from binance_etl.schema import drop_partitions_older_than, ensure_partitions, migrate

pytestmark = pytest.mark.integration


def partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'trades'::regclass"
    ).fetchall()
    return {name for (name,) in rows}


def test_migrate_is_idempotent_and_creates_days_ahead(pg_conn: psycopg.Connection):
    today = datetime.now(UTC).date()
    migrate(pg_conn, ahead_days=2)
    migrate(pg_conn, ahead_days=2)
    for n in range(3):
        assert f"trades_{today + timedelta(days=n):%Y%m%d}" in partitions(pg_conn)


def test_partition_bounds_are_utc_days(pg_conn: psycopg.Connection):
    day = date(2021, 3, 14)
    ensure_partitions(pg_conn, [day, day])
    bounds = pg_conn.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
        "WHERE relname = 'trades_20210314'"
    ).fetchone()
    assert bounds is not None
    assert "2021-03-14 00:00:00+00" in bounds[0]
    assert "2021-03-15 00:00:00+00" in bounds[0]
    insert = (
        "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker) "
        "VALUES ('BTCUSDT', %s, 1, 1, %s, false) ON CONFLICT DO NOTHING"
    )
    pg_conn.execute(insert, (1, datetime(2021, 3, 14, 0, 0, tzinfo=UTC)))
    pg_conn.execute(insert, (2, datetime(2021, 3, 14, 23, 59, 59, 999000, tzinfo=UTC)))
    pg_conn.execute(insert, (2, datetime(2021, 3, 14, 23, 59, 59, 999000, tzinfo=UTC)))  # duplicate
    rows = pg_conn.execute("SELECT count(*) FROM trades_20210314").fetchone()
    assert rows == (2,)
    with pytest.raises(psycopg.errors.CheckViolation):  # no partition for that day: explicit error
        pg_conn.execute(insert, (3, datetime(2021, 3, 15, 0, 0, tzinfo=UTC)))


def test_retention_drops_only_old_days(pg_conn: psycopg.Connection):
    today = date(2030, 1, 10)
    ensure_partitions(pg_conn, [date(2030, 1, 1), date(2030, 1, 5), date(2030, 1, 9)])
    dropped = drop_partitions_older_than(pg_conn, 5, today=today)
    assert "trades_20300101" in dropped
    assert "trades_20300105" not in dropped
    assert {"trades_20300105", "trades_20300109"} <= partitions(pg_conn)


def test_one_row_per_trade_whatever_its_time_precision(pg_conn: psycopg.Connection):
    """The stream says T in milliseconds, the daily dumps in microseconds: still one trade."""
    ensure_partitions(pg_conn, [date(2025, 9, 1)])
    insert = (
        "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker) "
        "VALUES ('BTCUSDT', 7, 108246.01, 0.0001, %s, true) ON CONFLICT DO NOTHING"
    )
    pg_conn.execute(insert, (datetime(2025, 9, 1, 12, 0, 0, 12000, tzinfo=UTC),))
    pg_conn.execute(insert, (datetime(2025, 9, 1, 12, 0, 0, 12345, tzinfo=UTC),))
    assert pg_conn.execute("SELECT count(*) FROM trades").fetchone() == (1,)
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_conn.execute(
            insert.removesuffix(" ON CONFLICT DO NOTHING"),
            (datetime(2025, 9, 1, 12, 0, 0, 12345, tzinfo=UTC),),
        )


def test_concurrent_partition_creation(pg_url: str):
    """Many writers touching a new day at once all succeed; the day gets one partition."""
    from concurrent.futures import ThreadPoolExecutor

    from binance_etl.db import connect

    day = date(2031, 7, 4)

    def create(_: int) -> list[str]:
        with connect(pg_url, autocommit=True) as conn:
            return ensure_partitions(conn, [day])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(16)))
    assert all(result == ["trades_20310704"] for result in results)
