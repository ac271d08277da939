"""The warehouse SQL text, as Redshift (and PostgreSQL) receive it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from etl.redshift import (
    TABLE_SPECS,
    copy_parquet_sql,
    create_stage_sql,
    create_table_sql,
    date_literal,
    delete_day_sql,
    drop_stage_sql,
    merge_sql,
    redshift_day_steps,
)

ROLE = "arn:aws:iam::123456789012:role/redshift-copy"
URI = "s3://my-bucket/data_clean/fact_trades/year=2025/month=09/day=10/"


def test_copy_parquet_statement() -> None:
    assert copy_parquet_sql("warehouse.fact_trades", URI, ROLE) == (
        "COPY warehouse.fact_trades FROM "
        "'s3://my-bucket/data_clean/fact_trades/year=2025/month=09/day=10/' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy' FORMAT AS PARQUET"
    )


@pytest.mark.parametrize(
    ("uri", "role"),
    [
        ("s3://bucket/x'; DROP TABLE t; --/", ROLE),
        ("https://bucket/x/", ROLE),
        (URI, "arn:aws:iam::123:role/short-account"),
        (URI, "arn:aws:iam::123456789012:role/x' IGNOREHEADER"),
    ],
)
def test_copy_refuses_unsafe_literals(uri: str, role: str) -> None:
    with pytest.raises(ValueError, match="s3://|IAM role"):
        copy_parquet_sql("warehouse.fact_trades", uri, role)


def test_copy_refuses_unsafe_target() -> None:
    with pytest.raises(ValueError, match="identifier"):
        copy_parquet_sql('warehouse."x"', URI, ROLE)


def test_fact_day_is_deleted_with_a_bound_parameter() -> None:
    assert delete_day_sql("warehouse", TABLE_SPECS["fact_trades"]) == (
        "DELETE FROM warehouse.fact_trades WHERE trade_date = %s"
    )
    with pytest.raises(ValueError, match="merged"):
        delete_day_sql("warehouse", TABLE_SPECS["dim_symbol"])


def test_dimension_merge_inserts_only_new_keys() -> None:
    spec = TABLE_SPECS["dim_symbol"]
    assert create_stage_sql("warehouse", spec) == (
        "CREATE TEMP TABLE stage_dim_symbol (LIKE warehouse.dim_symbol)"
    )
    assert merge_sql("warehouse", spec) == (
        "INSERT INTO warehouse.dim_symbol (symbol, base_asset, quote_asset) "
        "SELECT s.symbol, s.base_asset, s.quote_asset FROM stage_dim_symbol s "
        "WHERE NOT EXISTS (SELECT 1 FROM warehouse.dim_symbol t WHERE t.symbol = s.symbol)"
    )
    assert drop_stage_sql(spec) == "DROP TABLE stage_dim_symbol"
    assert "t.datetime = s.datetime" in merge_sql("warehouse", TABLE_SPECS["dim_time"])


def test_table_ddl_per_dialect() -> None:
    redshift = create_table_sql("warehouse", TABLE_SPECS["fact_trades"], "redshift")
    assert redshift.startswith(
        "CREATE TABLE IF NOT EXISTS warehouse.fact_trades (symbol VARCHAR(32) NOT NULL, "
        "trade_minute TIMESTAMP NOT NULL, min_price DECIMAL(30,8) NOT NULL"
    )
    assert "total_trade_value DECIMAL(38,16) NOT NULL" in redshift
    assert redshift.endswith("PRIMARY KEY (symbol, trade_minute)) SORTKEY (trade_minute)")
    postgres = create_table_sql("warehouse", TABLE_SPECS["dim_time"], "postgres")
    assert postgres == (
        "CREATE TABLE IF NOT EXISTS warehouse.dim_time (datetime timestamptz NOT NULL, "
        "year integer NOT NULL, month integer NOT NULL, day integer NOT NULL, "
        "hour integer NOT NULL, minute integer NOT NULL, PRIMARY KEY (datetime))"
    )
    with pytest.raises(ValueError, match="dialect"):
        create_table_sql("warehouse", TABLE_SPECS["dim_time"], "mysql")
    with pytest.raises(ValueError, match="identifier"):
        create_table_sql("Warehouse; DROP", TABLE_SPECS["dim_time"], "postgres")


def _partitions(bucket: str = "my-bucket") -> dict[str, str]:
    return {table: f"s3://{bucket}/lake/{table}/year=2025/month=09/day=10/"
            for table in ("dim_time", "dim_symbol", "fact_trades")}


def test_day_load_is_one_ordered_statement_list() -> None:
    steps = redshift_day_steps("warehouse", date(2025, 9, 10), _partitions(), ROLE)
    assert [(step.table, step.action) for step in steps] == [
        (None, "ddl"), ("dim_time", "ddl"), ("dim_symbol", "ddl"), ("fact_trades", "ddl"),
        ("dim_time", "lock"), ("dim_symbol", "lock"), ("fact_trades", "lock"),
        ("dim_time", "stage"), ("dim_time", "copy"), ("dim_time", "merge"), ("dim_time", "drop"),
        ("dim_symbol", "stage"), ("dim_symbol", "copy"), ("dim_symbol", "merge"),
        ("dim_symbol", "drop"),
        ("fact_trades", "delete"), ("fact_trades", "copy"),
    ]
    assert len(steps) <= 40  # the Data API's limit per batch
    sql = [step.sql for step in steps]
    assert sql[4] == "LOCK warehouse.dim_time"
    assert sql[8] == (
        "COPY stage_dim_time FROM 's3://my-bucket/lake/dim_time/year=2025/month=09/day=10/' "
        f"IAM_ROLE '{ROLE}' FORMAT AS PARQUET"
    )
    assert sql[-2] == "DELETE FROM warehouse.fact_trades WHERE trade_date = '2025-09-10'"
    assert sql[-1] == (
        "COPY warehouse.fact_trades FROM "
        "'s3://my-bucket/lake/fact_trades/year=2025/month=09/day=10/' "
        f"IAM_ROLE '{ROLE}' FORMAT AS PARQUET"
    )
    assert all("%s" not in text for text in sql)  # a Data API batch takes no parameters


def test_the_day_literal_comes_only_from_a_date() -> None:
    assert date_literal(date(2025, 1, 2)) == "'2025-01-02'"
    for value in ("2025-01-02'; DROP TABLE x; --", datetime(2025, 1, 2, tzinfo=UTC)):
        with pytest.raises(TypeError, match="expected a date"):
            date_literal(value)  # type: ignore[arg-type]


def test_day_load_refuses_an_unsafe_partition_uri() -> None:
    partitions = _partitions() | {"fact_trades": "s3://my-bucket/x' IAM_ROLE 'y/"}
    with pytest.raises(ValueError, match="s3://"):
        redshift_day_steps("warehouse", date(2025, 9, 10), partitions, ROLE)
