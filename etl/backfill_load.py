"""Loading one verified daily dump into the raw `trades` table, idempotently, with COPY.

A trade is identified by (symbol, trade_id), the primary key of every day partition. A dump's
times (microseconds since 2025) are finer than the stream's (milliseconds), so a trade streamed
and then backfilled differs in `trade_time`; the partition key still rejects the second copy, but
a rejected row aborts a COPY. The loader therefore skips stored ids itself and keeps to COPY:

1. It locks the day's partition against concurrent writers (SHARE ROW EXCLUSIVE: readers go
   on; a writer into that day waits for this transaction) and reads which ids of the symbol are
   already stored there, as ranges (streamed ids are consecutive, so a day holds a handful).
2. "fresh": nothing stored — every row goes straight into the partition with COPY.
   "anti-join": some stored — the converter drops rows whose id is in a stored range and the
   rest go straight into the partition with COPY; rows already stored are kept as they are.
   "staged": stored ids too scattered to hold as ranges (more than `max_ranges`) — COPY into a
   temporary table, then `INSERT ... SELECT ... WHERE NOT EXISTS` (same id) into the partition.
3. In the same transaction it records the day in `backfill_log`, so a crash mid-day leaves
   neither rows nor a record, and the day is simply loaded again by the next run.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from binance_etl.schema import ensure_partitions, partition_name
from etl.backfill_dump import COPY_COLUMNS, DumpFormatError, IdRanges, RowConverter, TimeUnit

logger = logging.getLogger(__name__)

LoadPath = Literal["fresh", "anti-join", "staged"]
READ_CHUNK = 1 << 20  # bytes of CSV read from the zip member per COPY write
DEFAULT_MAX_RANGES = 100_000

BACKFILL_LOG_DDL = """
CREATE TABLE IF NOT EXISTS backfill_log (
    symbol       text         NOT NULL,
    day          date         NOT NULL,
    file_sha256  text         NOT NULL,
    rows         bigint       NOT NULL,
    inserted     bigint       NOT NULL,
    time_unit    text         NOT NULL,
    load_path    text         NOT NULL,
    loaded_at    timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, day)
)
"""

# Consecutive stored ids form one range ("gaps and islands": id - row_number() is constant).
STORED_RANGES_SQL = """
SELECT min(trade_id), max(trade_id) FROM (
    SELECT trade_id, trade_id - row_number() OVER (ORDER BY trade_id) AS island
    FROM {partition} WHERE symbol = %s
) ids GROUP BY island ORDER BY 1
"""
STORED_SUMMARY_SQL = (
    "SELECT count(*), min(trade_id), max(trade_id) FROM {partition} WHERE symbol = %s"
)


@dataclass(frozen=True)
class LoadResult:
    rows: int  # rows in the file
    inserted: int  # rows this load added
    already_stored: int  # rows of the file whose id was already stored
    unit: TimeUnit
    path: LoadPath
    seconds: float


ProgressCallback = Callable[[int, int], None]  # (CSV bytes read so far, rows so far)


def ensure_backfill_log(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(BACKFILL_LOG_DDL)


def finished(
    conn: psycopg.Connection, symbols: list[str], first: date, last: date
) -> set[tuple[str, date]]:
    """(symbol, day) pairs that a previous run loaded completely."""
    rows = conn.execute(
        "SELECT symbol, day FROM backfill_log WHERE symbol = ANY(%s) AND day BETWEEN %s AND %s",
        (symbols, first, last),
    ).fetchall()
    return {(str(symbol), day) for symbol, day in rows}


def stored_ranges(conn: psycopg.Connection, symbol: str, day: date, limit: int) -> IdRanges | None:
    """The ids of `symbol` already stored in the day's partition, as ranges; None if > `limit`."""
    partition = sql.Identifier(partition_name(day))
    summary = conn.execute(sql.SQL(STORED_SUMMARY_SQL).format(partition=partition), (symbol,))
    row = summary.fetchone()
    assert row is not None
    count, low, high = row
    if count == 0:
        return IdRanges()
    if high - low + 1 == count:  # one unbroken run of ids: the usual streamed day
        return IdRanges([(low, high)]) if limit >= 1 else None
    ranges: list[tuple[int, int]] = []
    with conn.cursor(name="backfill_ranges") as cursor:
        cursor.execute(sql.SQL(STORED_RANGES_SQL).format(partition=partition), (symbol,))
        for start, end in cursor:
            ranges.append((start, end))
            if len(ranges) > limit:
                return None
    return IdRanges(ranges)


def _ensure_partition(conn: psycopg.Connection, day: date) -> None:
    try:
        ensure_partitions(conn, [day])
    except psycopg.errors.DuplicateTable:
        # Two writers creating the same partition at once: the loser's re-check after the
        # advisory lock can miss the winner's table (its catalog cache is not refreshed by an
        # advisory lock), so CREATE fails although the partition now exists. A new transaction
        # sees it.
        logger.info("partition of %s was created concurrently; checking again", day)
        ensure_partitions(conn, [day])


def _open_member(archive: zipfile.ZipFile, symbol: str, day: date) -> zipfile.ZipInfo:
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) != 1 or not members[0].filename.endswith(".csv"):
        names = ", ".join(info.filename for info in members) or "nothing"
        raise DumpFormatError(f"expected one CSV file in the zip, found {names}")
    expected = f"{symbol}-trades-{day:%Y-%m-%d}.csv"
    if members[0].filename != expected:
        logger.warning("%s %s: zip member is %s, expected %s", symbol, day, members[0].filename,
                       expected)
    return members[0]


def _copy(
    conn: psycopg.Connection,
    table: sql.Composable,
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    converter: RowConverter,
    progress: ProgressCallback | None,
) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in COPY_COLUMNS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, columns)
    read = 0
    with conn.cursor() as cursor, cursor.copy(statement) as copy, archive.open(member) as source:
        while chunk := source.read(READ_CHUNK):
            read += len(chunk)
            text = converter.feed(chunk)
            if text:
                copy.write(text)
            if progress is not None:
                progress(read, converter.rows)
        text = converter.finish()  # the zip's CRC check has passed once read() returned b""
        if text:
            copy.write(text)
    if progress is not None:
        progress(read, converter.rows)


def load_dump(
    conn: psycopg.Connection,
    zip_path: str | Path,
    symbol: str,
    day: date,
    file_sha256: str,
    *,
    progress: ProgressCallback | None = None,
    max_ranges: int = DEFAULT_MAX_RANGES,
) -> LoadResult:
    """Load one day's dump for `symbol`, in one transaction, and record it in `backfill_log`.

    `conn` must not be inside a transaction. Raises `zipfile.BadZipFile` for a broken archive,
    `DumpFormatError` for rows that are not Binance's format or not of that day, and psycopg
    errors from the database; in every case nothing of that day is committed.
    """
    started = time.monotonic()
    _ensure_partition(conn, day)
    partition = sql.Identifier(partition_name(day))
    with zipfile.ZipFile(zip_path) as archive:
        member = _open_member(archive, symbol, day)
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(partition))
            ranges = stored_ranges(conn, symbol, day, max_ranges)
            if ranges is not None:
                path: LoadPath = "anti-join" if len(ranges) else "fresh"
                converter = RowConverter(symbol, day, skip=ranges)
                _copy(conn, partition, archive, member, converter, progress)
                inserted = converter.rows - converter.skipped
            else:
                path = "staged"
                converter = RowConverter(symbol, day)
                conn.execute("CREATE TEMPORARY TABLE backfill_stage"
                             " (LIKE trades INCLUDING DEFAULTS) ON COMMIT DROP")
                _copy(conn, sql.Identifier("backfill_stage"), archive, member, converter, progress)
                columns = sql.SQL(", ").join(sql.Identifier(name) for name in COPY_COLUMNS)
                inserted = conn.execute(
                    sql.SQL(
                        "INSERT INTO {partition} ({columns}) SELECT {columns} FROM backfill_stage s"
                        " WHERE NOT EXISTS (SELECT 1 FROM {partition} t"
                        " WHERE t.symbol = s.symbol AND t.trade_id = s.trade_id)"
                        " ON CONFLICT DO NOTHING"
                    ).format(partition=partition, columns=columns)
                ).rowcount
            if converter.unit is None:
                raise DumpFormatError("the file holds no trades")
            conn.execute(
                "INSERT INTO backfill_log (symbol, day, file_sha256, rows, inserted, time_unit,"
                " load_path) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (symbol, day) DO UPDATE SET file_sha256 = excluded.file_sha256,"
                " rows = excluded.rows, inserted = excluded.inserted,"
                " time_unit = excluded.time_unit, load_path = excluded.load_path,"
                " loaded_at = now()",
                (symbol, day, file_sha256, converter.rows, inserted, converter.unit, path),
            )
    result = LoadResult(
        rows=converter.rows,
        inserted=inserted,
        already_stored=converter.rows - inserted,
        unit=converter.unit,
        path=path,
        seconds=time.monotonic() - started,
    )
    logger.info("%s %s: %d rows (%s), %d inserted, %d already stored, path %s, %.1f s",
                symbol, day, result.rows, result.unit, result.inserted, result.already_stored,
                result.path, result.seconds)
    return result
