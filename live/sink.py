"""The live query's sink (`foreachBatch`): merge a micro-batch into bars_1m in ONE transaction.

Per batch: the batch's trades → per-(symbol, minute) partial aggregates (etl.transform's
`minute_partials`, the batch's own code), collected to the driver; then in one PostgreSQL
transaction: the id runs of the batch are checked against `live_coverage` (all counted already:
a replayed batch, nothing to do; none counted: apply; some: two queries write the same table,
refused), the touched bars' stored partials are merged with the new ones and finalised
(`merge_partials` + `finalise_partials`, the same finaliser as fact_trades), upserted on
(symbol, trade_minute), the runs recorded, and `complete` set where the coverage proves it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from binance_etl.logs import setup_logging
from etl.transform import (
    FACT_COLUMNS,
    PARTIAL_COLUMNS,
    finalise_partials,
    merge_partials,
    minute_partials,
)
from live.source import connect, with_retries

logger = logging.getLogger(__name__)

LIVE_LOCK = 727_011  # advisory lock: one writer of bars_1m at a time
RANGE_KEYS = ("range_lo", "range_hi", "anchored")
# the partial columns bars_1m stores beside the contract's (trade_count is both)
STORED_PARTIALS = tuple(c for c in PARTIAL_COLUMNS if c not in FACT_COLUMNS)
BAR_COLUMNS = (*FACT_COLUMNS, *STORED_PARTIALS)
PARTIALS_SCHEMA = pa.schema([pa.field("symbol", pa.string()),
                             pa.field("trade_minute", pa.timestamp("us", tz="UTC")),
                             *(pa.field(c, pa.int64()) for c in PARTIAL_COLUMNS)])

COMPLETE_SQL = """
UPDATE bars_1m AS b SET complete = true, updated_at = now()
WHERE b.symbol = ANY(%s) AND NOT b.complete AND EXISTS (
    SELECT 1 FROM live_coverage AS c
    WHERE c.symbol = b.symbol
      AND c.last_time >= b.trade_minute + interval '1 minute'
      AND c.first_time < b.trade_minute + interval '1 minute'
      AND (c.anchored OR c.first_time < b.trade_minute))
"""


@dataclass
class Piece:
    """One id run [lo, hi) of a symbol read by the batch, with its first and last trade time."""

    symbol: str
    lo: int
    hi: int
    anchored: bool
    first_time: datetime
    last_time: datetime
    count: int
    since: datetime | None = None


@dataclass
class Counted:
    """A row of live_coverage."""

    lo: int
    hi: int
    anchored: bool
    first_time: datetime
    last_time: datetime


@dataclass
class SinkStats:
    batches: int = 0
    replayed: int = 0
    trades: int = 0
    bars: int = 0
    last_batch_id: int | None = None
    applied_at: list[float] = field(default_factory=list)


def classify(pieces: list[Piece], counted: dict[str, list[Counted]]) -> str:
    """'new' (no piece counted yet), 'applied' (every piece counted: a replay) or raises."""
    inside = overlapping = 0
    for piece in pieces:
        for run in counted.get(piece.symbol, []):
            if run.lo < piece.hi and piece.lo < run.hi:
                overlapping += 1
                inside += run.lo <= piece.lo and piece.hi <= run.hi
    if overlapping == 0:
        return "new"
    if inside == len(pieces) == overlapping:
        return "applied"
    raise RuntimeError("a micro-batch overlaps trades already counted in bars_1m: is another "
                       "live query (another checkpoint) writing the same database?")


def merge_counted(runs: list[Counted], pieces: list[Piece]) -> list[Counted]:
    """The symbol's counted runs with the batch's pieces added (adjacent runs join)."""
    items = sorted([*runs, *(Counted(p.lo, p.hi, p.anchored, p.first_time, p.last_time)
                             for p in pieces)], key=lambda r: r.lo)
    merged: list[Counted] = []
    for run in items:
        if merged and run.lo < merged[-1].hi:
            raise RuntimeError(f"counted id runs overlap at {run.lo}")
        if merged and run.lo == merged[-1].hi:
            last = merged[-1]
            merged[-1] = Counted(last.lo, run.hi, last.anchored, last.first_time, run.last_time)
        else:
            merged.append(run)
    return merged


def read_counted(conn: psycopg.Connection, symbols: list[str]) -> dict[str, list[Counted]]:
    out: dict[str, list[Counted]] = {}
    for symbol, lo, hi, anchored, first, last in conn.execute(
        "SELECT symbol, first_id, next_id, anchored, first_time, last_time FROM live_coverage"
        " WHERE symbol = ANY(%s) ORDER BY symbol, first_id FOR UPDATE",
        (symbols,),
    ).fetchall():
        out.setdefault(symbol, []).append(Counted(lo, hi, anchored, first, last))
    return out


def write_counted(conn: psycopg.Connection, symbol: str, runs: list[Counted]) -> None:
    conn.execute("DELETE FROM live_coverage WHERE symbol = %s", (symbol,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO live_coverage (symbol, first_id, next_id, anchored, first_time,"
            " last_time) VALUES (%s, %s, %s, %s, %s, %s)",
            [(symbol, r.lo, r.hi, r.anchored, r.first_time, r.last_time) for r in runs],
        )


def upsert(conn: psycopg.Connection, bars: pa.Table) -> None:
    """Bars into bars_1m on (symbol, trade_minute); `complete` is re-decided afterwards."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in BAR_COLUMNS)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in BAR_COLUMNS[2:]
    )
    conn.execute("CREATE TEMP TABLE bars_in (LIKE bars_1m INCLUDING DEFAULTS) ON COMMIT DROP")
    with conn.cursor().copy(sql.SQL("COPY bars_in ({}) FROM STDIN").format(columns)) as copy:
        for row in bars.select(list(BAR_COLUMNS)).to_pylist():
            copy.write_row([row[c] for c in BAR_COLUMNS])
    conn.execute(sql.SQL(
        "INSERT INTO bars_1m ({cols}, complete, updated_at) SELECT {cols}, false, now() "
        "FROM bars_in ON CONFLICT (symbol, trade_minute) DO UPDATE SET {updates}, "
        "complete = false, updated_at = now()"
    ).format(cols=columns, updates=updates))


PIECE_FIELDS = ("range_lo", "range_hi", "anchored", "since", "first_time", "last_time",
                "trade_count")


def open_partials(conn: psycopg.Connection, schema: pa.Schema) -> pa.Table:
    """The stored partials of every bar that is not complete yet: the only bars a new trade can
    land in (a complete bar's ids are all counted), read before the batch's Spark job so that
    the job merges and finalises in one pass."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ("symbol", "trade_minute",
                                                            *PARTIAL_COLUMNS))
    rows = conn.execute(
        sql.SQL("SELECT {} FROM bars_1m WHERE NOT complete").format(columns)).fetchall()
    names = ["symbol", "trade_minute", *PARTIAL_COLUMNS]
    return pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows],
                                schema=schema)


def merged_bars(batch: DataFrame, stored: pa.Table) -> pa.Table:
    """ONE Spark job: the batch's trades → partials per (symbol, minute, id run), merged with the
    stored partials of open bars, finalised by the batch's finaliser. Each output row is a bar
    the batch touched, with the id runs that reached it (`pieces`)."""
    new = minute_partials(
        batch,
        keys=(*RANGE_KEYS, "since"),
        extra=(F.min("trade_time").alias("first_time"), F.max("trade_time").alias("last_time")),
    ).select("symbol", "trade_minute", *PARTIAL_COLUMNS,
             F.struct(*PIECE_FIELDS).alias("piece"))
    piece_type = new.schema["piece"].dataType
    spark = batch.sparkSession
    # the schema spelled out: Spark Connect cannot infer one from an empty table
    old = spark.createDataFrame(stored, schema=from_arrow_schema(stored.schema)).select(
        "symbol", "trade_minute", *PARTIAL_COLUMNS, F.lit(None).cast(piece_type).alias("piece"))
    merged = merge_partials(new.unionByName(old),
                            extra=(F.collect_list("piece").alias("pieces"),))
    touched = merged.where(F.size("pieces") > 0)
    return finalise_partials(touched, keep=(*STORED_PARTIALS, "pieces")).toArrow()


def pieces_from_bars(bars: pa.Table) -> list[Piece]:
    """The batch's id runs from the bars' `pieces` lists; each run's trade count must be its id
    span (every id read once), else the batch is refused."""
    runs: dict[tuple[str, int, int, bool], list[dict[str, Any]]] = {}
    for symbol, items in zip(bars["symbol"].to_pylist(), bars["pieces"].to_pylist(),
                             strict=True):
        for item in items:
            runs.setdefault((symbol, item["range_lo"], item["range_hi"], item["anchored"]),
                            []).append(item)
    pieces = [
        Piece(symbol, lo, hi, anchored, min(i["first_time"] for i in items),
              max(i["last_time"] for i in items), sum(i["trade_count"] for i in items),
              items[0]["since"])
        for (symbol, lo, hi, anchored), items in runs.items()
    ]
    for piece in pieces:
        if piece.count != piece.hi - piece.lo:
            raise RuntimeError(f"{piece.symbol}: {piece.count} trade(s) read for ids "
                               f"[{piece.lo}, {piece.hi}): each id must be read exactly once")
    return sorted(pieces, key=lambda p: (p.symbol, p.lo))


def refuse_complete(conn: psycopg.Connection, bars: pa.Table) -> None:
    """A new trade in a bar already complete would mean ids out of time order (the rule that
    makes `complete` final): stop loudly rather than publish a wrong bar."""
    row = conn.execute(
        "SELECT symbol, trade_minute FROM bars_1m WHERE complete AND (symbol, trade_minute) IN "
        "(SELECT * FROM unnest(%s::text[], %s::timestamptz[])) LIMIT 1",
        (bars["symbol"].to_pylist(), bars["trade_minute"].to_pylist()),
    ).fetchone()
    if row is not None:
        raise RuntimeError(f"{row[0]} {row[1].isoformat()}: a new trade in a bar that was "
                           "complete; trade ids of this symbol are not in time order")


class BarsSink:
    """`writeStream.foreachBatch(BarsSink(url))`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stats = SinkStats()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in a Python process of a Spark Connect server (foreachBatch through
        SPARK_REMOTE): log there as the commands do, into the server's log."""
        self.__dict__.update(state)
        setup_logging()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        result = with_retries(lambda: self._apply(batch, batch_id),
                              f"apply micro-batch {batch_id}")
        if result is None:
            return
        outcome, pieces, bars = result
        trades = sum(p.count for p in pieces)
        if outcome == "applied":
            self.stats.replayed += 1
            logger.info("micro-batch %d was already applied (replay): nothing changed", batch_id)
        else:
            self.stats.batches += 1
            self.stats.trades += trades
            self.stats.bars += bars
            logger.info("micro-batch %d: %d trade(s) in %d id run(s) -> %d bar(s) in %.2f s",
                        batch_id, trades, len(pieces), bars, time.perf_counter() - started)
        self.stats.last_batch_id = batch_id
        self.stats.applied_at.append(time.time())

    def _apply(self, batch: DataFrame, batch_id: int) -> tuple[str, list[Piece], int] | None:
        with connect(self.url) as conn, conn.transaction():
            # one writer at a time, held across the Spark job: the open bars it merges with
            # cannot change underneath it
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIVE_LOCK,))
            schema = PARTIALS_SCHEMA
            bars = merged_bars(batch, open_partials(conn, schema))
            if bars.num_rows == 0:
                return None
            pieces = pieces_from_bars(bars)
            symbols = sorted({p.symbol for p in pieces})
            counted = read_counted(conn, symbols)
            if classify(pieces, counted) == "applied":
                return "applied", pieces, 0
            refuse_complete(conn, bars)
            since = min(p.since for p in pieces if p.since is not None)
            upsert(conn, bars)
            for symbol in symbols:
                mine = [p for p in pieces if p.symbol == symbol]
                write_counted(conn, symbol, merge_counted(counted.get(symbol, []), mine))
            conn.execute(COMPLETE_SQL, (symbols,))
            conn.execute(
                "INSERT INTO live_state (id, since, last_batch_id) VALUES (1, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET last_batch_id = EXCLUDED.last_batch_id, "
                "updated_at = now()",
                (since, batch_id),
            )
            return "new", pieces, bars.num_rows


def summary_of(stats: SinkStats) -> dict[str, Any]:
    return {"batches": stats.batches, "replayed": stats.replayed, "trades": stats.trades,
            "bar_updates": stats.bars, "last_batch_id": stats.last_batch_id}
