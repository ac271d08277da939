"""Warehouse SQL as small pure functions (their text is what the unit tests assert).

Both back ends share the table definitions and the load flow (etl/load.py); only the DDL types
and the way a day's Parquet gets into a table differ: Redshift `COPY ... FORMAT AS PARQUET`
straight from the lake's partition, PostgreSQL `COPY ... FROM STDIN` fed from the same files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import unquote, urlsplit

from etl.utils import TABLES, validate_identifier

IAM_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/=-]*$")


@dataclass(frozen=True)
class Column:
    name: str
    postgres: str
    redshift: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    day_column: str | None  # facts: DELETE the day then COPY; dims (None): merge by key

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


TABLE_SPECS: dict[str, TableSpec] = {
    "dim_time": TableSpec(
        "dim_time",
        (
            Column("datetime", "timestamptz NOT NULL", "TIMESTAMP NOT NULL"),
            Column("year", "integer NOT NULL", "INTEGER NOT NULL"),
            Column("month", "integer NOT NULL", "INTEGER NOT NULL"),
            Column("day", "integer NOT NULL", "INTEGER NOT NULL"),
            Column("hour", "integer NOT NULL", "INTEGER NOT NULL"),
            Column("minute", "integer NOT NULL", "INTEGER NOT NULL"),
        ),
        ("datetime",),
        None,
    ),
    "dim_symbol": TableSpec(
        "dim_symbol",
        (
            Column("symbol", "text NOT NULL", "VARCHAR(32) NOT NULL"),
            Column("base_asset", "text NOT NULL", "VARCHAR(32) NOT NULL"),
            Column("quote_asset", "text", "VARCHAR(16)"),
        ),
        ("symbol",),
        None,
    ),
    "fact_trades": TableSpec(
        "fact_trades",
        (
            Column("symbol", "text NOT NULL", "VARCHAR(32) NOT NULL"),
            Column("trade_minute", "timestamptz NOT NULL", "TIMESTAMP NOT NULL"),
            Column("min_price", "numeric(30,8) NOT NULL", "DECIMAL(30,8) NOT NULL"),
            Column("max_price", "numeric(30,8) NOT NULL", "DECIMAL(30,8) NOT NULL"),
            Column("avg_price", "numeric(30,12) NOT NULL", "DECIMAL(30,12) NOT NULL"),
            Column("total_quantity", "numeric(38,8) NOT NULL", "DECIMAL(38,8) NOT NULL"),
            Column("total_trade_value", "numeric(38,16) NOT NULL", "DECIMAL(38,16) NOT NULL"),
            Column("trade_count", "bigint NOT NULL", "BIGINT NOT NULL"),
            Column("open_price", "numeric(30,8) NOT NULL", "DECIMAL(30,8) NOT NULL"),
            Column("close_price", "numeric(30,8) NOT NULL", "DECIMAL(30,8) NOT NULL"),
            Column("vwap", "numeric(30,12)", "DECIMAL(30,12)"),
            Column("taker_buy_quantity", "numeric(38,8) NOT NULL", "DECIMAL(38,8) NOT NULL"),
            Column("trade_date", "date NOT NULL", "DATE NOT NULL"),
        ),
        ("symbol", "trade_minute"),
        "trade_date",
    ),
}


def qualified(schema: str, table: str) -> str:
    return f"{validate_identifier(schema)}.{validate_identifier(table)}"


def create_schema_sql(schema: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {validate_identifier(schema)}"


def create_table_sql(schema: str, spec: TableSpec, dialect: str) -> str:
    """`CREATE TABLE IF NOT EXISTS` for one warehouse table, in the dialect's types."""
    if dialect not in ("postgres", "redshift"):
        raise ValueError(f"unknown warehouse dialect {dialect!r}")
    columns = ", ".join(
        f"{validate_identifier(c.name)} {c.postgres if dialect == 'postgres' else c.redshift}"
        for c in spec.columns
    )
    key = ", ".join(validate_identifier(name) for name in spec.key)
    tail = f", PRIMARY KEY ({key}))"
    if dialect == "redshift":
        sort = validate_identifier(spec.key[-1] if spec.day_column else spec.key[0])
        tail += f" SORTKEY ({sort})"
    return f"CREATE TABLE IF NOT EXISTS {qualified(schema, spec.name)} ({columns}{tail}"


def delete_day_sql(schema: str, spec: TableSpec) -> str:
    """Removes the day from a fact table; the day is a bound parameter."""
    if spec.day_column is None:
        raise ValueError(f"{spec.name} is merged by key, not replaced by day")
    return (
        f"DELETE FROM {qualified(schema, spec.name)} "
        f"WHERE {validate_identifier(spec.day_column)} = %s"
    )


def copy_parquet_sql(target: str, s3_uri: str, iam_role: str) -> str:
    """Redshift's `COPY target FROM 's3://.../' IAM_ROLE '...' FORMAT AS PARQUET`.

    COPY takes no bound parameters, so both literals are validated against strict patterns
    (no quotes can get through) instead of being escaped.
    """
    if not S3_URI_RE.fullmatch(s3_uri):
        raise ValueError(f"not a plain s3:// URI: {s3_uri!r}")
    if not IAM_ROLE_RE.fullmatch(iam_role):
        raise ValueError("REDSHIFT_IAM_ROLE must be an IAM role ARN (arn:aws:iam::<id>:role/...)")
    names = target.split(".")
    target = ".".join(validate_identifier(name) for name in names)
    return f"COPY {target} FROM '{s3_uri}' IAM_ROLE '{iam_role}' FORMAT AS PARQUET"


def stage_table_name(spec: TableSpec) -> str:
    return validate_identifier(f"stage_{spec.name}")


def create_stage_sql(schema: str, spec: TableSpec) -> str:
    """A session-private copy of the target's shape to merge from."""
    return f"CREATE TEMP TABLE {stage_table_name(spec)} (LIKE {qualified(schema, spec.name)})"


def merge_sql(schema: str, spec: TableSpec) -> str:
    """Insert the staged rows whose key the target does not have yet (no duplicates)."""
    columns = ", ".join(validate_identifier(name) for name in spec.column_names)
    stage = stage_table_name(spec)
    match = " AND ".join(f"t.{name} = s.{name}" for name in map(validate_identifier, spec.key))
    selected = ", ".join(f"s.{name}" for name in spec.column_names)
    return (
        f"INSERT INTO {qualified(schema, spec.name)} ({columns}) "
        f"SELECT {selected} FROM {stage} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {qualified(schema, spec.name)} t WHERE {match})"
    )


def drop_stage_sql(spec: TableSpec) -> str:
    return f"DROP TABLE {stage_table_name(spec)}"


def date_literal(day: date) -> str:
    """`'2025-09-10'`: a `datetime.date` can only render as digits and dashes."""
    if not isinstance(day, date) or isinstance(day, datetime):
        raise TypeError(f"expected a date, got {type(day).__name__}")
    return f"'{day.isoformat()}'"


def delete_day_literal_sql(schema: str, spec: TableSpec, day: date) -> str:
    """`delete_day_sql` with the day as a literal, for the Data API's BatchExecuteStatement,
    which takes no parameters (the day is a `date`, never text from outside)."""
    return delete_day_sql(schema, spec).replace("%s", date_literal(day))


@dataclass(frozen=True)
class Step:
    """One statement of a Redshift day load: which table and what it does (for row counts)."""

    table: str | None
    action: str  # ddl, lock, delete, copy, stage, merge, drop
    sql: str


def redshift_day_steps(
    schema: str, day: date, partitions: Mapping[str, str], iam_role: str
) -> list[Step]:
    """Every statement that replaces one day in a Redshift warehouse, in order, meant to run
    as ONE transaction: create what is missing, lock the tables, then per table either DELETE
    the day and COPY its partition (facts) or COPY into a temporary stage and insert the keys
    not there yet (dimensions). `partitions` maps each table to its lake partition `s3://`
    URI. 17 statements: within the Data API's 40 per batch."""
    steps = [Step(None, "ddl", create_schema_sql(schema))]
    steps += [Step(t, "ddl", create_table_sql(schema, TABLE_SPECS[t], "redshift")) for t in TABLES]
    # After the DDL: LOCK needs the tables; it serialises concurrent loads of the warehouse.
    steps += [Step(t, "lock", f"LOCK {qualified(schema, t)}") for t in TABLES]
    for table in TABLES:
        spec = TABLE_SPECS[table]
        if spec.day_column is not None:
            steps.append(Step(table, "delete", delete_day_literal_sql(schema, spec, day)))
            steps.append(Step(table, "copy", copy_parquet_sql(
                qualified(schema, table), partitions[table], iam_role)))
        else:
            steps.append(Step(table, "stage", create_stage_sql(schema, spec)))
            steps.append(Step(table, "copy", copy_parquet_sql(
                stage_table_name(spec), partitions[table], iam_role)))
            steps.append(Step(table, "merge", merge_sql(schema, spec)))
            steps.append(Step(table, "drop", drop_stage_sql(spec)))
    return steps


def connect_redshift(url: str) -> object:
    """A DB-API connection to Redshift from `redshift://user:password@host:5439/db`."""
    import redshift_connector

    parts = urlsplit(url)
    if parts.scheme != "redshift" or not parts.hostname:
        raise ValueError("WAREHOUSE_URL must look like redshift://user:password@host:5439/db")
    return redshift_connector.connect(
        host=parts.hostname,
        port=parts.port or 5439,
        database=parts.path.lstrip("/") or "dev",
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )
