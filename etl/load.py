"""Load: the published day from the lake into the warehouse — two back ends, one contract.

Both replace the day in ONE transaction: serialise loaders, make sure the tables exist, then
per table either DELETE the day and COPY it (facts) or COPY into a temporary stage and insert
the keys the table does not have yet (dimensions). A crash anywhere rolls the day back to its
previous state; a rerun replaces it, so there is always exactly one copy.

- PostgreSQL (local default): fed the lake's Parquet files through `COPY ... FROM STDIN`.
- Redshift: COPYs the lake's Parquet partition itself (`FORMAT AS PARQUET`, IAM role). The
  statements are built up front (`etl.redshift.redshift_day_steps`) and handed to a
  `StatementRunner`, which runs them in order in one transaction: a DB-API connection
  (`WAREHOUSE_URL=redshift://`, or the amazon provider's RedshiftSQLHook inside Airflow) or
  the Redshift Data API's BatchExecuteStatement (`etl.redshift_data`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import pyarrow.parquet as pq

from etl.lake import Lake
from etl.redshift import (
    TABLE_SPECS,
    create_schema_sql,
    create_stage_sql,
    create_table_sql,
    delete_day_sql,
    drop_stage_sql,
    merge_sql,
    qualified,
    redshift_day_steps,
    stage_table_name,
)
from etl.utils import TABLES, validate_identifier

logger = logging.getLogger(__name__)

WAREHOUSE_SCHEMA = "warehouse"
LOAD_LOCK = 727_004  # PostgreSQL advisory lock key: one warehouse load at a time


class PostgresTarget:
    """Local default: reads the lake's Parquet with pyarrow and streams it with COPY."""

    dialect = "postgres"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def lock(self, cursor: Any, schema: str) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))

    def copy_into(self, cursor: Any, relation: str, table: str, day: date) -> None:
        columns = TABLE_SPECS[table].column_names
        files = self.lake.partition_files(table, day)
        if not files:
            raise FileNotFoundError(f"the lake has no {table} partition for {day}")
        names = ", ".join(validate_identifier(name) for name in columns)
        with cursor.copy(f"COPY {relation} ({names}) FROM STDIN") as copy:
            for name, _ in files:
                frame = pq.read_table(io.BytesIO(self.lake.read_bytes(name)), columns=list(columns))
                for row in frame.to_pylist():
                    copy.write_row([row[column] for column in columns])


def ensure_tables(cursor: Any, dialect: str, schema: str = WAREHOUSE_SCHEMA) -> None:
    cursor.execute(create_schema_sql(schema))
    for table in TABLES:
        cursor.execute(create_table_sql(schema, TABLE_SPECS[table], dialect))


def load_day(
    conn: Any, target: PostgresTarget, day: date, *, schema: str = WAREHOUSE_SCHEMA
) -> dict[str, Any]:
    """Replace the day in a PostgreSQL warehouse in one transaction; returns rows per table."""
    loaded: dict[str, Any] = {}
    cursor = conn.cursor()
    try:
        target.lock(cursor, schema)  # before DDL: concurrent CREATE IF NOT EXISTS can clash
        ensure_tables(cursor, target.dialect, schema)
        for table in TABLES:
            spec = TABLE_SPECS[table]
            relation = qualified(schema, table)
            if spec.day_column is not None:
                cursor.execute(delete_day_sql(schema, spec), (day,))
                replaced = cursor.rowcount
                target.copy_into(cursor, relation, table, day)
                day_column = validate_identifier(spec.day_column)
                cursor.execute(f"SELECT count(*) FROM {relation} WHERE {day_column} = %s", (day,))
                loaded[table] = {"rows": int(cursor.fetchone()[0]), "replaced": replaced}
            else:
                cursor.execute(create_stage_sql(schema, spec))
                target.copy_into(cursor, stage_table_name(spec), table, day)
                cursor.execute(merge_sql(schema, spec))
                loaded[table] = {"inserted": cursor.rowcount}
                cursor.execute(drop_stage_sql(spec))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()
    logger.info("warehouse (%s) loaded %s: %s", target.dialect, day, loaded)
    return loaded


# -- Redshift ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Executed:
    """What a runner reports: rows affected per statement (-1 where the back end does not say),
    how it ran them, and the Data API's id of the batch (to look it up in AWS)."""

    rows: list[int]
    via: str
    statement_id: str | None = None


class StatementRunner(Protocol):
    """Runs SQL statements in order as ONE transaction (all or nothing)."""

    def run(self, statements: Sequence[str]) -> Executed: ...


class DbApiRunner:
    """A DB-API connection (redshift_connector): execute each statement, commit once at the end;
    roll back and close on any error."""

    via = "dbapi"

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def run(self, statements: Sequence[str]) -> Executed:
        conn = self._connect()
        try:
            cursor = conn.cursor()
            rows: list[int] = []
            for sql in statements:
                cursor.execute(sql)
                count = cursor.rowcount
                rows.append(count if isinstance(count, int) else -1)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
        return Executed(rows, self.via)


def load_day_redshift(
    runner: StatementRunner,
    lake: Lake,
    day: date,
    iam_role: str,
    *,
    schema: str = WAREHOUSE_SCHEMA,
) -> tuple[dict[str, Any], Executed]:
    """Replace the day in a Redshift warehouse from the lake's S3 partitions, in one transaction.

    Returns rows per table as Redshift reports them (facts: deleted and copied; dimensions:
    copied and inserted; -1 where not reported) and what the runner did."""
    if not lake.location.is_s3:
        raise ValueError("a Redshift warehouse loads from S3: LAKE_URI must be s3://...")
    for table in TABLES:  # COPY of an absent prefix fails inside Redshift; say it here instead
        if not lake.partition_files(table, day):
            raise FileNotFoundError(f"the lake has no {table} partition for {day}")
    partitions = {table: lake.partition_uri(table, day) for table in TABLES}
    steps = redshift_day_steps(schema, day, partitions, iam_role)
    executed = runner.run([step.sql for step in steps])
    if len(executed.rows) != len(steps):
        raise RuntimeError(f"the warehouse reported {len(executed.rows)} results for "
                           f"{len(steps)} statements")
    loaded: dict[str, dict[str, int]] = {}
    labels = {"delete": "deleted", "copy": "copied", "merge": "inserted"}
    for step, rows in zip(steps, executed.rows, strict=True):
        if step.table is not None and step.action in labels:
            loaded.setdefault(step.table, {})[labels[step.action]] = rows
    logger.info("warehouse (redshift via %s) loaded %s: %s", executed.via, day, loaded)
    return loaded, executed
