"""The warehouse SQL text, as Redshift (and PostgreSQL) receive it."""

from __future__ import annotations

import pytest

from etl.redshift import (
    TABLE_SPECS,
    copy_parquet_sql,
    create_stage_sql,
    create_table_sql,
    delete_day_sql,
    drop_stage_sql,
    merge_sql,
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
