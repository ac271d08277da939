"""Days, lake locations, JDBC URLs and the extract's SQL text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from etl.extract import binary_transfer_url, day_subquery, time_range_predicates
from etl.utils import (
    DayError,
    check_not_future,
    jdbc_connection,
    jsonable,
    parse_day,
    parse_lake_uri,
    partition_suffix,
)


def test_parse_day() -> None:
    assert parse_day("2025-09-10") == date(2025, 9, 10)
    for bad in ("2025-9-10", "10/09/2025", "2025-02-30", "yesterday", ""):
        with pytest.raises(DayError, match="YYYY-MM-DD"):
            parse_day(bad)


def test_future_days_are_refused() -> None:
    now = datetime(2025, 9, 10, 12, 0, tzinfo=UTC)
    check_not_future(date(2025, 9, 10), now)  # today: allowed
    with pytest.raises(DayError, match="future"):
        check_not_future(date(2025, 9, 11), now)


def test_partition_suffix_is_zero_padded() -> None:
    assert partition_suffix(date(2025, 9, 1)) == "year=2025/month=09/day=01"


def test_lake_locations(tmp_path: object) -> None:
    s3 = parse_lake_uri("s3a://bucket/data_clean")
    assert (s3.is_s3, s3.bucket, s3.root) == (True, "bucket", "data_clean")
    assert s3.partition("fact_trades", date(2025, 9, 10)) == (
        "data_clean/fact_trades/year=2025/month=09/day=10"
    )
    assert s3.uri("fact_trades") == "s3://bucket/data_clean/fact_trades"
    assert parse_lake_uri("s3://bucket").key("x", "y") == "x/y"
    local = parse_lake_uri("file:///srv/lake")
    assert local.partition("dim_time", date(2025, 1, 2)) == (
        "/srv/lake/dim_time/year=2025/month=01/day=02"
    )
    assert local.staging(date(2025, 1, 2), "dim_time") == "/srv/lake/_staging/2025-01-02/dim_time"
    with pytest.raises(ValueError, match="bucket"):
        parse_lake_uri("s3:///nobucket")


def test_jdbc_connection_from_database_url() -> None:
    url, props = jdbc_connection("postgresql://etl:p%40ss@127.0.0.1:5544/raw?sslmode=disable")
    assert url == "jdbc:postgresql://127.0.0.1:5544/raw?sslmode=disable"
    assert props == {"user": "etl", "password": "p@ss", "driver": "org.postgresql.Driver"}
    assert jdbc_connection("postgres://postgres@db/x")[0] == "jdbc:postgresql://db/x"
    with pytest.raises(ValueError, match="postgresql"):
        jdbc_connection("redshift://u@h:5439/db")


def test_binary_transfer_is_asked_for_in_the_url() -> None:
    assert binary_transfer_url("jdbc:postgresql://db:5432/x") == (
        "jdbc:postgresql://db:5432/x?prepareThreshold=-1"
    )
    assert binary_transfer_url("jdbc:postgresql://db/x?sslmode=require") == (
        "jdbc:postgresql://db/x?sslmode=require&prepareThreshold=-1"
    )
    # a URL that sets it itself keeps its own value
    assert binary_transfer_url("jdbc:postgresql://db/x?prepareThreshold=5") == (
        "jdbc:postgresql://db/x?prepareThreshold=5"
    )


def test_day_subquery_filters_inside_postgresql() -> None:
    sql = day_subquery(date(2025, 9, 10))
    assert sql == (
        "(SELECT symbol, trade_id, (price * 100000000)::bigint AS price_e8, "
        "(quantity * 100000000)::bigint AS quantity_e8, trade_time, is_buyer_maker "
        "FROM public.trades WHERE trade_time >= TIMESTAMPTZ '2025-09-10 00:00:00+00:00' "
        "AND trade_time < TIMESTAMPTZ '2025-09-11 00:00:00+00:00') AS day_trades"
    )


def test_time_ranges_tile_the_day() -> None:
    assert time_range_predicates(date(2025, 9, 10), 2) == [
        "trade_time >= TIMESTAMPTZ '2025-09-10 00:00:00+00:00' "
        "AND trade_time < TIMESTAMPTZ '2025-09-10 12:00:00+00:00'",
        "trade_time >= TIMESTAMPTZ '2025-09-10 12:00:00+00:00' "
        "AND trade_time < TIMESTAMPTZ '2025-09-11 00:00:00+00:00'",
    ]
    seven = time_range_predicates(date(2025, 9, 10), 7)
    assert len(seven) == 7
    # each range starts where the previous one ended
    for before, after in zip(seven, seven[1:], strict=False):
        assert before.split("trade_time < ")[1] == after.split("trade_time >= ")[1].split(" AND")[0]
    with pytest.raises(ValueError, match="at least 1"):
        time_range_predicates(date(2025, 9, 10), 0)


def test_jsonable_keeps_decimals_exact() -> None:
    document = {"q": Decimal("0.10000001"), "d": date(2025, 1, 1), "l": [Decimal("1E+2")]}
    assert jsonable(document) == {"q": "0.10000001", "d": "2025-01-01", "l": ["1E+2"]}
