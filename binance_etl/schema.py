"""Idempotent migrations of the raw store, and its day partitions.

The raw table `trades` is range-partitioned by UTC day on `trade_time`, and every day partition
has the primary key (symbol, trade_id): Binance's identity of a trade. PostgreSQL would make a
key declared on the partitioned parent include the partition key (trade_time), and that is not
enough: the same trade arrives with a millisecond time from the stream and REST and with a
microsecond time from the daily dumps. Both times fall in the same UTC day (a millisecond never
straddles midnight), so a per-partition key on (symbol, trade_id) catches every second copy, and
`INSERT ... ON CONFLICT DO NOTHING` into `trades` keeps one row whichever way a trade came in.

Partitions are created ahead of time for coming days (`PARTITIONS_AHEAD_DAYS`) and on demand for
any day a writer touches (`ensure_partitions`), through one SQL function that serialises
concurrent creators with an advisory lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg
import psycopg.sql

logger = logging.getLogger(__name__)

MIGRATION_LOCK = 727_001  # advisory lock key for migrations and partition creation

TRADES_DDL = """
CREATE TABLE IF NOT EXISTS trades (
    symbol          text            NOT NULL,
    trade_id        bigint          NOT NULL,
    price           numeric(30, 8)  NOT NULL,
    quantity        numeric(30, 8)  NOT NULL,
    trade_time      timestamptz     NOT NULL,
    event_time      timestamptz,
    is_buyer_maker  boolean         NOT NULL,
    ingested_at     timestamptz     NOT NULL DEFAULT now()
) PARTITION BY RANGE (trade_time);

CREATE OR REPLACE FUNCTION ensure_trades_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('trades_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(format('public.%I', name)) IS NULL THEN
        PERFORM pg_advisory_xact_lock(727001);
        IF to_regclass(format('public.%I', name)) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE public.%I PARTITION OF public.trades '
                    '(PRIMARY KEY (symbol, trade_id)) FOR VALUES FROM (%L) TO (%L)',
                    name,
                    (day::timestamp AT TIME ZONE 'UTC'),
                    ((day + 1)::timestamp AT TIME ZONE 'UTC')
                );
            EXCEPTION WHEN duplicate_table THEN
                -- another session created it between our check and our lock's snapshot
                NULL;
            END;
        END IF;
    END IF;
    RETURN name;
END $$;
"""


# The live minute bars (design contract): the columns, types and arithmetic of the warehouse's
# fact_trades (without trade_date), plus `complete` and `updated_at`. `python -m live` keeps it
# current through upserts on (symbol, trade_minute); the dashboard only reads it.
BARS_DDL = """
CREATE TABLE IF NOT EXISTS bars_1m (
    symbol              text            NOT NULL,
    trade_minute        timestamptz     NOT NULL,
    min_price           numeric(30, 8)  NOT NULL,
    max_price           numeric(30, 8)  NOT NULL,
    avg_price           numeric(30, 12) NOT NULL,
    total_quantity      numeric(38, 8)  NOT NULL,
    total_trade_value   numeric(38, 16) NOT NULL,
    trade_count         bigint          NOT NULL,
    open_price          numeric(30, 8)  NOT NULL,
    close_price         numeric(30, 8)  NOT NULL,
    vwap                numeric(30, 12),
    taker_buy_quantity  numeric(38, 8)  NOT NULL,
    complete            boolean         NOT NULL DEFAULT false,
    updated_at          timestamptz     NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_minute)
);
"""


# What the live query needs beside the contract's columns (live/sink.py): each bar's mergeable
# partial aggregate (etl.transform.PARTIAL_COLUMNS, exact scaled integers), so that late trades
# are merged into a bar exactly; the id runs it has counted per symbol (`live_coverage`, which
# makes a replayed micro-batch a no-op and decides `complete`); and the scope's start.
LIVE_DDL = """
ALTER TABLE bars_1m
    ADD COLUMN IF NOT EXISTS min_p bigint, ADD COLUMN IF NOT EXISTS max_p bigint,
    ADD COLUMN IF NOT EXISTS sum_p_hi bigint, ADD COLUMN IF NOT EXISTS sum_p_lo bigint,
    ADD COLUMN IF NOT EXISTS sum_q_hi bigint, ADD COLUMN IF NOT EXISTS sum_q_lo bigint,
    ADD COLUMN IF NOT EXISTS taker_q_hi bigint, ADD COLUMN IF NOT EXISTS taker_q_lo bigint,
    ADD COLUMN IF NOT EXISTS value_c0 bigint, ADD COLUMN IF NOT EXISTS value_c1 bigint,
    ADD COLUMN IF NOT EXISTS value_c2 bigint, ADD COLUMN IF NOT EXISTS value_c3 bigint,
    ADD COLUMN IF NOT EXISTS value_c4 bigint,
    ADD COLUMN IF NOT EXISTS open_key bigint, ADD COLUMN IF NOT EXISTS open_p bigint,
    ADD COLUMN IF NOT EXISTS close_key bigint, ADD COLUMN IF NOT EXISTS close_p bigint,
    ADD COLUMN IF NOT EXISTS first_id_block bigint, ADD COLUMN IF NOT EXISTS last_id_block bigint;

CREATE TABLE IF NOT EXISTS live_coverage (
    symbol      text        NOT NULL,
    first_id    bigint      NOT NULL,
    next_id     bigint      NOT NULL,   -- exclusive: ids [first_id, next_id) are all counted
    anchored    boolean     NOT NULL,
    first_time  timestamptz NOT NULL,
    last_time   timestamptz NOT NULL,
    PRIMARY KEY (symbol, first_id),
    CHECK (next_id > first_id)
);

CREATE INDEX IF NOT EXISTS bars_1m_incomplete ON bars_1m (symbol, trade_minute)
    WHERE NOT complete;

CREATE TABLE IF NOT EXISTS live_state (
    id              integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    since           timestamptz NOT NULL,
    last_batch_id   bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
"""


def partition_name(day: date) -> str:
    return f"trades_{day:%Y%m%d}"


def day_of(moment: datetime) -> date:
    """The UTC day of an aware datetime."""
    return moment.astimezone(UTC).date()


def migrate(conn: psycopg.Connection, *, ahead_days: int = 3, today: date | None = None) -> None:
    """Create the raw table and the partitions of today and the coming days; idempotent."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(TRADES_DDL)
        conn.execute(BARS_DDL)
        conn.execute(LIVE_DDL)
    today = today or datetime.now(UTC).date()
    ensure_partitions(conn, (today + timedelta(days=n) for n in range(ahead_days + 1)))


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[str]:
    """Make sure each day has its partition; returns their names."""
    names = []
    with conn.transaction():
        for day in sorted(set(days)):
            row = conn.execute("SELECT ensure_trades_partition(%s)", (day,)).fetchone()
            assert row is not None
            names.append(str(row[0]))
    return names


def drop_partitions_older_than(
    conn: psycopg.Connection, days: int, today: date | None = None
) -> list[str]:
    """Retention: drop whole day partitions older than `days` days; returns what was dropped."""
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=days)
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'trades' AND c.relname ~ '^trades_[0-9]{8}$'
        """
    ).fetchall()
    dropped = []
    with conn.transaction():
        for (name,) in rows:
            day = datetime.strptime(name.removeprefix("trades_"), "%Y%m%d").date()
            if day < cutoff:
                conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(name)))
                dropped.append(name)
    if dropped:
        logger.info("retention: dropped %d partition(s) older than %s", len(dropped), cutoff)
    return sorted(dropped)
