"""A Spark streaming source over the raw `trades` table (Spark 4's Python data source API).

`spark.readStream.format("binance_trades").option("url", ...).option("symbols", ...)` gives one
row per stored trade, each read by exactly one micro-batch (see live/offsets.py for the offset
and docs/live.md for why): the driver-side reader plans offsets with small index-range queries
(`latestOffset`), cuts the new id runs into partitions (`partitions`), and executors read each
partition's id range (`read`, stateless, Arrow batches of exact scaled integers).

Rows carry the id run they came from (`range_lo`, `range_hi`, `anchored`) and the scope's start
(`since`): the sink records what it counted by those runs, which makes it idempotent and gives
`complete`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
from psycopg import sql
from pyarrow import csv as pa_csv
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from live.offsets import Run, SourceOffset, default_since, gaps, new_pieces, normalise, split

logger = logging.getLogger(__name__)

NAME = "binance_trades"
SCHEMA = (
    "symbol string, trade_id long, price_e8 long, quantity_e8 long, trade_time timestamp, "
    "is_buyer_maker boolean, range_lo long, range_hi long, anchored boolean, since timestamp"
)
ARROW_SCHEMA = pa.schema([
    pa.field("symbol", pa.string()),
    pa.field("trade_id", pa.int64()),
    pa.field("price_e8", pa.int64()),
    pa.field("quantity_e8", pa.int64()),
    pa.field("trade_time", pa.timestamp("us", tz="UTC")),
    pa.field("is_buyer_maker", pa.bool_()),
    pa.field("range_lo", pa.int64()),
    pa.field("range_hi", pa.int64()),
    pa.field("anchored", pa.bool_()),
    pa.field("since", pa.timestamp("us", tz="UTC")),
])
DEFAULT_MAX_TRADES = 1_000_000  # per micro-batch (a backfilled day is read in several)
DEFAULT_SPLIT = 250_000  # ids per partition (one Spark task)
RETRY_SECONDS = 300.0  # how long a PostgreSQL outage is waited out before the query fails
ARROW_ROWS = 50_000

T = TypeVar("T")


def with_retries(action: Callable[[], T], what: str, seconds: float = RETRY_SECONDS) -> T:
    """`action()`, retried with capped exponential back-off while PostgreSQL is unreachable
    (a restart, a failover); other errors are raised at once."""
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning("%s: PostgreSQL unreachable (%s); retry %d in %.1f s", what,
                       str(error).splitlines()[0] if error else "?", state.attempt_number,
                       state.next_action.sleep if state.next_action else 0.0)

    retrying = Retrying(
        retry=retry_if_exception_type(psycopg.OperationalError),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        stop=stop_after_delay(seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            return action()
    raise AssertionError("unreachable")


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True,
                           connect_timeout=5, options="-c timezone=UTC")


def _range(column: str, lo: int | None, hi: int | None) -> tuple[str, list[int]]:
    parts, params = [], []
    if lo is not None:
        parts.append(f"{column} >= %s")
        params.append(lo)
    if hi is not None:
        parts.append(f"{column} < %s")
        params.append(hi)
    return (" AND ".join(parts) or "TRUE"), params


def islands_sql(regions: Sequence[tuple[int | None, int | None]]) -> str:
    """New stored ids of one symbol in the gaps of its runs (one index range scan per gap),
    the first `limit` of them, grouped into runs of consecutive ids."""
    selects = []
    for lo, hi in regions:
        where, _ = _range("trade_id", lo, hi)
        selects.append(
            "(SELECT trade_id FROM public.trades WHERE symbol = %s AND trade_time >= %s "
            f"AND {where} ORDER BY trade_id LIMIT %s)"
        )
    return (
        "SELECT min(trade_id), max(trade_id) + 1, min(trade_id) - 1 FROM ("
        " SELECT trade_id, trade_id - row_number() OVER (ORDER BY trade_id) AS grp FROM ("
        f"  SELECT trade_id FROM ({' UNION ALL '.join(selects)}) AS fresh"
        "   ORDER BY trade_id LIMIT %s) AS first_ids"
        ") AS numbered GROUP BY grp ORDER BY 1"
    )


def islands_params(symbol: str, since: datetime,
                   regions: Sequence[tuple[int | None, int | None]], limit: int) -> list[Any]:
    params: list[Any] = []
    for lo, hi in regions:
        _, bounds = _range("trade_id", lo, hi)
        params.extend([symbol, since, *bounds, limit])
    params.append(limit)
    return params


def find_new_runs(conn: psycopg.Connection, symbol: str, since: datetime,
                  runs: Sequence[Run], limit: int) -> list[Run]:
    """The runs of ids stored since `runs` was taken (at most `limit` ids), each with its
    anchored flag (is the id below it stored, out of scope?)."""
    regions = gaps(runs)
    rows = conn.execute(islands_sql(regions), islands_params(symbol, since, regions, limit))
    found = [(int(lo), int(hi), int(below)) for lo, hi, below in rows.fetchall()]
    ends = {hi for _, hi, _ in runs}
    out: list[Run] = []
    for lo, hi, below in found:
        anchored = False
        if lo not in ends:  # not the continuation of a counted run: is the id below stored?
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM public.trades WHERE symbol = %s AND trade_id = %s)",
                (symbol, below),
            ).fetchone()
            anchored = bool(row and row[0])
        out.append((lo, hi, anchored))
    return out


READ_SQL = (
    "COPY (SELECT trade_id, (price * 100000000)::bigint, (quantity * 100000000)::bigint,"
    " (extract(epoch FROM trade_time) * 1000000)::bigint, is_buyer_maker"
    " FROM public.trades WHERE symbol = {symbol} AND trade_time >= {since}"
    " AND trade_id >= {lo} AND trade_id < {hi} ORDER BY trade_id) TO STDOUT WITH (FORMAT csv)"
)
READ_COLUMNS = {"trade_id": pa.int64(), "price_e8": pa.int64(), "quantity_e8": pa.int64(),
                "micros": pa.int64(), "is_buyer_maker": pa.bool_()}


@dataclass(frozen=True)
class TradeRange(InputPartition):
    """One Spark task: ids [lo, hi) of a symbol, all stored when the batch was planned."""

    url: str
    symbol: str
    since: str
    lo: int
    hi: int
    anchored: bool


def read_range(part: TradeRange) -> list[pa.RecordBatch]:
    """Every trade of the range as Arrow record batches; exactly hi - lo rows, or an error.
    PostgreSQL writes the rows as CSV of exact integers (COPY), which Arrow parses in C."""
    since = datetime.fromisoformat(part.since)
    statement = sql.SQL(READ_SQL).format(symbol=sql.Literal(part.symbol),
                                         since=sql.Literal(since), lo=sql.Literal(part.lo),
                                         hi=sql.Literal(part.hi))

    def fetch() -> bytes:
        buffer = io.BytesIO()
        with connect(part.url) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
            for chunk in copy:
                buffer.write(chunk)
        return buffer.getvalue()

    data = with_retries(fetch, f"read {part.symbol} [{part.lo}, {part.hi})")
    table = pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(column_names=list(READ_COLUMNS)),
        convert_options=pa_csv.ConvertOptions(column_types=READ_COLUMNS, true_values=["t"],
                                              false_values=["f"]),
    ) if data else pa.table({name: pa.array([], kind) for name, kind in READ_COLUMNS.items()})
    if table.num_rows != part.hi - part.lo:
        raise RuntimeError(
            f"{part.symbol}: {table.num_rows} stored trade(s) in ids [{part.lo}, {part.hi}), "
            f"planned {part.hi - part.lo}: rows were deleted (retention?) after planning"
        )
    n = table.num_rows

    def constant(value: object, kind: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, kind), n)

    whole = pa.table([
        constant(part.symbol, pa.string()),
        table["trade_id"], table["price_e8"], table["quantity_e8"],
        table["micros"].cast(pa.timestamp("us", tz="UTC")),
        table["is_buyer_maker"],
        constant(part.lo, pa.int64()),
        constant(part.hi, pa.int64()),
        constant(part.anchored, pa.bool_()),
        constant(since, pa.timestamp("us", tz="UTC")),
    ], schema=ARROW_SCHEMA)
    return whole.to_batches(max_chunksize=ARROW_ROWS)


def stored_offset(conn: psycopg.Connection, now: datetime) -> SourceOffset:
    """Where a query without a checkpoint starts: what the sink already counted (so a lost
    checkpoint neither recounts nor skips), else an empty offset from `default_since`."""
    row = conn.execute("SELECT since FROM live_state WHERE id = 1").fetchone()
    if row is None:
        return SourceOffset(default_since(now))
    runs: dict[str, list[Run]] = {}
    for symbol, lo, hi, anchored in conn.execute(
        "SELECT symbol, first_id, next_id, anchored FROM live_coverage ORDER BY symbol, first_id"
    ).fetchall():
        runs.setdefault(str(symbol), []).append((int(lo), int(hi), bool(anchored)))
    return SourceOffset(row[0].astimezone(UTC), {s: normalise(r) for s, r in runs.items()})


def per_symbol_budget(limit: ReadLimit, symbols: int) -> int:
    """How many new trade ids one symbol may add to a batch under Spark's read limit (an
    even share of ReadMaxRows; no limit under ReadAllAvailable, e.g. Trigger.AvailableNow)."""
    if isinstance(limit, ReadMaxRows):
        return max(1, int(limit.max_rows) // max(1, symbols))
    if isinstance(limit, ReadAllAvailable):
        return 2**62
    raise ValueError(f"unsupported read limit {limit!r}")


class TradesStreamReader(DataSourceStreamReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.url = options["url"]
        self.symbols = [s for s in options["symbols"].split(",") if s]
        self.max_trades = int(options.get("maxTradesPerBatch", DEFAULT_MAX_TRADES))
        self.split_ids = int(options.get("idsPerPartition", DEFAULT_SPLIT))
        self._conn: psycopg.Connection | None = None

    def _query(self, action: Callable[[psycopg.Connection], T], what: str) -> T:
        def attempt() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.url)
            try:
                return action(self._conn)
            except psycopg.OperationalError:
                self._conn.close()
                self._conn = None
                raise

        return with_retries(attempt, what)

    def initialOffset(self) -> dict:
        offset = self._query(lambda c: stored_offset(c, datetime.now(UTC)), "initial offset")
        logger.info("live source starts at %s (%d trade(s) already counted)",
                    offset.since.isoformat(), offset.size())
        return offset.to_json()

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_trades)

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        offset = SourceOffset.from_json(start)
        per_symbol = per_symbol_budget(limit, len(self.symbols))

        def plan(conn: psycopg.Connection) -> SourceOffset:
            latest = offset
            for symbol in self.symbols:
                found = find_new_runs(conn, symbol, offset.since,
                                      offset.symbols.get(symbol, []), per_symbol)
                if found:
                    latest = latest.with_runs(symbol, found)
            return latest

        return self._query(plan, "latest offset").to_json()

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        begin, finish = SourceOffset.from_json(start), SourceOffset.from_json(end)
        since = finish.since.isoformat()
        return [
            TradeRange(self.url, symbol, since, lo, hi, anchored)
            for symbol, pieces in sorted(new_pieces(begin, finish).items())
            for lo, hi, anchored in split(pieces, self.split_ids)
        ]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, TradeRange)
        yield from read_range(partition)

    def commit(self, end: dict) -> None:
        """Nothing to release: the checkpoint and bars_1m hold all state."""

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class TradesSource(DataSource):
    """`format("binance_trades")`: options `url` (PostgreSQL), `symbols` (comma list),
    `maxTradesPerBatch`, `idsPerPartition`."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        for key in ("url", "symbols"):
            if not self.options.get(key):
                raise ValueError(f"the {NAME} source needs the option {key!r}")
        return TradesStreamReader(dict(self.options))
