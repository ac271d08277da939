"""Load: the published day from the lake into the warehouse — one loader, two back ends.

The flow is the same for both, in ONE transaction for the whole day: serialise loaders, make
sure the tables exist, then per table either DELETE the day and COPY it (facts) or COPY into a
temporary stage and insert the keys the table does not have yet (dimensions). A crash anywhere
rolls the day back to its previous state; a rerun replaces it, so there is always exactly one
copy. Redshift COPYs the lake's Parquet partition itself (`FORMAT AS PARQUET`, IAM role);
PostgreSQL is fed the same Parquet files through `COPY ... FROM STDIN`.
"""

from __future__ import annotations

import io
import logging
from datetime import date
from typing import Any, Protocol

import pyarrow.parquet as pq

from etl.lake import Lake
from etl.redshift import (
    TABLE_SPECS,
    copy_parquet_sql,
    create_schema_sql,
    create_stage_sql,
    create_table_sql,
    delete_day_sql,
    drop_stage_sql,
    merge_sql,
    qualified,
    stage_table_name,
)
from etl.utils import TABLES, validate_identifier

logger = logging.getLogger(__name__)

WAREHOUSE_SCHEMA = "warehouse"
LOAD_LOCK = 727_004  # PostgreSQL advisory lock key: one warehouse load at a time


class Target(Protocol):
    """How one back end gets a table's day from the lake into a table."""

    dialect: str

    def lock(self, cursor: Any, schema: str) -> None: ...

    def copy_into(self, cursor: Any, relation: str, table: str, day: date) -> None: ...


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


class RedshiftTarget:
    """Redshift: COPY straight from the S3 partition with the configured IAM role."""

    dialect = "redshift"

    def __init__(self, lake: Lake, iam_role: str) -> None:
        if not lake.location.is_s3:
            raise ValueError("a Redshift warehouse loads from S3: LAKE_URI must be s3://...")
        self.lake = lake
        self.iam_role = iam_role

    def lock(self, cursor: Any, schema: str) -> None:
        for table in TABLES:
            cursor.execute(f"LOCK {qualified(schema, table)}")

    def copy_into(self, cursor: Any, relation: str, table: str, day: date) -> None:
        uri = self.lake.partition_uri(table, day)
        cursor.execute(copy_parquet_sql(relation, uri, self.iam_role))


def ensure_tables(cursor: Any, dialect: str, schema: str = WAREHOUSE_SCHEMA) -> None:
    cursor.execute(create_schema_sql(schema))
    for table in TABLES:
        cursor.execute(create_table_sql(schema, TABLE_SPECS[table], dialect))


def load_day(
    conn: Any, target: Target, day: date, *, schema: str = WAREHOUSE_SCHEMA
) -> dict[str, Any]:
    """Replace the day in the warehouse in one transaction; returns rows per table."""
    loaded: dict[str, Any] = {}
    cursor = conn.cursor()
    try:
        if target.dialect == "postgres":
            target.lock(cursor, schema)  # before DDL: concurrent CREATE IF NOT EXISTS can clash
            ensure_tables(cursor, target.dialect, schema)
        else:
            ensure_tables(cursor, target.dialect, schema)
            target.lock(cursor, schema)
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
