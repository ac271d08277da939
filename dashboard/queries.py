"""Every SQL statement the dashboard runs, and the read-only connection pools they run on.

Two sources: the raw store (`trades`, `bars_1m`) and the warehouse (`warehouse.fact_trades`),
by default the same server. Connections are pooled (psycopg_pool), in autocommit with
`default_transaction_read_only=on`: every statement runs in a read-only transaction, so the
dashboard cannot change a row whatever it is asked. All values are bound parameters.

Bars leave PostgreSQL already as JSON text in the shape of the API contract (`json_agg` over
`numeric::text`): the decimals are the stored digits, never a float, and the web layer passes
the text through without parsing it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from binance_etl.db import redact
from etl.quality import SymbolTotals, raw_totals

logger = logging.getLogger(__name__)

POOL_MAX_SIZE = 4
POOL_TIMEOUT_SECONDS = 3.0  # a request waits this long for a connection, then gets a 503
RECONNECT_SECONDS = 5.0  # a failing reconnection gives up after this; the next request retries
STATEMENT_TIMEOUT_MS = 15_000


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached (or stopped answering); one line, password redacted."""


class Database:
    """A small pool of read-only connections to one PostgreSQL database."""

    def __init__(self, url: str, *, name: str, max_size: int = POOL_MAX_SIZE) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.name = name
        options = (
            "-c timezone=UTC -c default_transaction_read_only=on "
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        )
        self.pool = ConnectionPool(
            self.url,
            kwargs={"autocommit": True, "options": options, "connect_timeout": 3},
            min_size=1,
            max_size=max_size,
            timeout=POOL_TIMEOUT_SECONDS,
            reconnect_timeout=RECONNECT_SECONDS,
            # A connection broken by a server restart is noticed and replaced before use.
            check=ConnectionPool.check_connection,
            name=name,
            open=False,
        )
        # Not waiting: the server starts (and says "database unavailable") while it is down.
        self.pool.open(wait=False)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"{self.name} database {redact(self.url)} unavailable: no connection within "
                f"{POOL_TIMEOUT_SECONDS:.0f} s"
            ) from None
        except psycopg.OperationalError as error:
            reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise DatabaseUnavailable(
                f"{self.name} database {redact(self.url)} unavailable: {reason}"
            ) from None

    def close(self) -> None:
        self.pool.close()


# The bars of a range in the contract's shape, as one JSON text: a row per bar, aggregated
# (row_to_json's compact form). `{source}`, `{complete}` and `{table}` are filled from constants
# below, never from input; every value is a bound parameter.
_BARS_JSON = """
SELECT coalesce(json_agg(b ORDER BY b.minute), '[]')::text
FROM (SELECT to_char(trade_minute AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS minute,
             open_price::text AS open, max_price::text AS high, min_price::text AS low,
             close_price::text AS close, total_quantity::text AS volume,
             total_trade_value::text AS value, vwap::text AS vwap, trade_count AS trades,
             {source} AS source, {complete} AS complete
      FROM {table}
      WHERE symbol = %(symbol)s AND trade_minute >= %(start)s AND trade_minute < %(end)s
      {where}) AS b
"""

# Which days of the range the warehouse holds for the symbol, and a token of the range's facts:
# their count and newest writing transaction id. A load replaces a day in one transaction, so
# any reload of a day in the range changes the token (a new xid is larger than every older
# one); the facts' JSON is recomputed only then (dashboard.bars caches it).
WAREHOUSE_VERSION_SQL = """
SELECT
    ARRAY(SELECT s FROM unnest(%(day_starts)s::timestamptz[]) AS s
          WHERE EXISTS (SELECT 1 FROM warehouse.fact_trades f
                        WHERE f.symbol = %(symbol)s AND f.trade_minute >= s
                          AND f.trade_minute < s + interval '1 day')),
    (SELECT count(*)::text || '|' || coalesce(max(xmin::text::bigint), 0)::text
     FROM warehouse.fact_trades
     WHERE symbol = %(symbol)s AND trade_minute >= %(start)s AND trade_minute < %(end)s)
"""

WAREHOUSE_BARS_SQL = _BARS_JSON.format(
    source="'warehouse'", complete="true", table="warehouse.fact_trades", where="")

LIVE_BARS_SQL = _BARS_JSON.format(
    source="'live'", complete="complete", table="public.bars_1m",
    where="AND date_trunc('day', trade_minute) <> ALL (%(loaded)s::timestamptz[])")

# Changes whenever a bar of the range is inserted or upserted: the live chart redraws on it.
LIVE_VERSION_SQL = """
SELECT count(*)::text || '|' || coalesce(max(updated_at)::text, '')
FROM public.bars_1m
WHERE symbol = %(symbol)s AND trade_minute >= %(start)s AND trade_minute < %(end)s
"""

WAREHOUSE_DAYS_SQL = """
SELECT trade_date, count(*) FROM warehouse.fact_trades
GROUP BY trade_date ORDER BY trade_date DESC LIMIT %(limit)s
"""

RAW_DAYS_SQL = """
SELECT to_date(substr(c.relname, 8), 'YYYYMMDD') AS day
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'trades' AND c.relname ~ '^trades_[0-9]{8}$'
  AND to_date(substr(c.relname, 8), 'YYYYMMDD') <= %(today)s
ORDER BY day DESC LIMIT %(limit)s
"""

# Per symbol: the last stored trade (by trade id: an index lookup per day partition) and a
# sample of at most 2,000 recent trades within the window, for the rate and the lag.
HEALTH_SQL = """
SELECT s.symbol, last.trade_time, last.ingested_at,
       recent.n, recent.first_time, recent.last_time, recent.lag_p50, recent.lag_max
FROM unnest(%(symbols)s::text[]) AS s(symbol)
LEFT JOIN LATERAL (
    SELECT t.trade_time, t.ingested_at FROM public.trades t
    WHERE t.symbol = s.symbol ORDER BY t.trade_id DESC LIMIT 1
) AS last ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(x.trade_time) AS first_time, max(x.trade_time) AS last_time,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM x.ingested_at - x.trade_time)) AS lag_p50,
           max(extract(epoch FROM x.ingested_at - x.trade_time)) AS lag_max
    FROM (SELECT t.trade_time, t.ingested_at FROM public.trades t
          WHERE t.symbol = s.symbol ORDER BY t.trade_id DESC LIMIT %(sample)s) AS x
    WHERE x.trade_time >= %(since)s
) AS recent ON true
ORDER BY s.symbol
"""


def warehouse_version(
    db: Database, symbol: str, start: datetime, end: datetime, day_starts: list[datetime]
) -> tuple[list[datetime], str]:
    """(the days among `day_starts` the warehouse holds for the symbol, the range's token)."""
    params = {"symbol": symbol, "start": start, "end": end, "day_starts": day_starts}
    with db.connection() as conn:
        try:
            row = conn.execute(WAREHOUSE_VERSION_SQL, params).fetchone()
        except pg_errors.UndefinedTable:  # the batch never ran: no warehouse yet
            return [], ""
    assert row is not None
    return list(row[0]), str(row[1])


def warehouse_bars(db: Database, symbol: str, start: datetime, end: datetime) -> str:
    """The warehouse's bars of the symbol in [start, end), as JSON."""
    params = {"symbol": symbol, "start": start, "end": end}
    with db.connection() as conn:
        try:
            row = conn.execute(WAREHOUSE_BARS_SQL, params).fetchone()
        except pg_errors.UndefinedTable:
            return "[]"
    assert row is not None
    return str(row[0])


def live_bars(
    db: Database, symbol: str, start: datetime, end: datetime, loaded: list[datetime]
) -> str:
    """The live bars of the symbol in [start, end) outside the days in `loaded`, as JSON."""
    params = {"symbol": symbol, "start": start, "end": end, "loaded": loaded}
    with db.connection() as conn:
        try:
            row = conn.execute(LIVE_BARS_SQL, params).fetchone()
        except pg_errors.UndefinedTable:  # the raw store was never migrated
            return "[]"
    assert row is not None
    return str(row[0])


def live_version(db: Database, symbol: str, start: datetime, end: datetime) -> str:
    """A token that changes when any live bar of the symbol in [start, end) changes."""
    with db.connection() as conn:
        try:
            row = conn.execute(LIVE_VERSION_SQL,
                               {"symbol": symbol, "start": start, "end": end}).fetchone()
        except pg_errors.UndefinedTable:
            return ""
    assert row is not None
    return str(row[0])


def warehouse_days(db: Database, limit: int = 366) -> dict[date, int]:
    """Days loaded in the warehouse (newest first) and their fact rows."""
    with db.connection() as conn:
        try:
            rows = conn.execute(WAREHOUSE_DAYS_SQL, {"limit": limit}).fetchall()
        except pg_errors.UndefinedTable:
            return {}
    return {day: int(count) for day, count in rows}


def raw_days(db: Database, today: date, limit: int) -> list[date]:
    """Days that have a raw partition, up to today, newest first."""
    with db.connection() as conn:
        return [row[0] for row in conn.execute(RAW_DAYS_SQL, {"today": today, "limit": limit})]


def raw_day_totals(db: Database, day: date) -> dict[str, SymbolTotals]:
    """Per-symbol trade counts and first/last ids of a raw day (the batch gate's own query)."""
    with db.connection() as conn:
        return raw_totals(conn, day)


@dataclass(frozen=True)
class HealthRow:
    symbol: str
    last_trade: datetime | None
    last_ingested: datetime | None
    sampled: int  # trades in the sample within the window
    first_time: datetime | None
    last_time: datetime | None
    lag_p50: Decimal | float | None  # seconds
    lag_max: Decimal | float | None


def health(
    db: Database, symbols: list[str], since: datetime, sample: int = 2000
) -> list[HealthRow]:
    params = {"symbols": symbols, "since": since, "sample": sample}
    with db.connection() as conn:
        try:
            rows = conn.execute(HEALTH_SQL, params).fetchall()
        except pg_errors.UndefinedTable:
            return [HealthRow(symbol, None, None, 0, None, None, None, None) for symbol in symbols]
    return [HealthRow(str(r[0]), r[1], r[2], int(r[3] or 0), r[4], r[5], r[6], r[7]) for r in rows]


def ping(db: Database) -> None:
    """Raises DatabaseUnavailable unless the database answers."""
    with db.connection() as conn:
        conn.execute("SELECT 1")
