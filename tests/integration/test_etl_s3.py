"""The lake on an S3-compatible server (moto's server process on 127.0.0.1): object keys,
files read back, warehouse loaded from S3, and a rerun replacing the day's objects."""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal

import boto3
import psycopg
import pyarrow.parquet as pq
import pytest

from etl.main import run_day
from tests.integration.test_etl_pipeline import (
    SYMBOLS,
    expected_minus_warehouse,
    insert_day,
    scalar,
    settings_for,
)

pytestmark = pytest.mark.integration


def test_s3_lake_keys_contents_and_rerun(
    spark: object, pg_conn: psycopg.Connection, pg_url: str, s3_server: str, s3_bucket: str
) -> None:
    day = date(2025, 9, 14)
    insert_day(pg_conn, day, per_symbol=400)
    settings = settings_for(pg_url, f"s3a://{s3_bucket}/data_clean", s3_endpoint_url=s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server)

    def keys() -> list[str]:
        answer = s3.list_objects_v2(Bucket=s3_bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    summary = run_day(day, settings)
    first = keys()
    parquet = [key for key in first if key.endswith(".parquet")]
    assert [key.rsplit("/", 1)[0] for key in parquet] == [
        "data_clean/dim_symbol/year=2025/month=09/day=14",
        "data_clean/dim_time/year=2025/month=09/day=14",
        "data_clean/fact_trades/year=2025/month=09/day=14",
    ]
    assert "data_clean/quality_reports/year=2025/month=09/day=14/quality.json" in first
    assert not [key for key in first if "_staging" in key]  # staging cleared after publish

    fact_key = next(key for key in parquet if "/fact_trades/" in key)
    facts = pq.read_table(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key=fact_key)["Body"].read()))
    assert sum(facts.column("trade_count").to_pylist()) == summary.rows_read == 3 * 400
    quantities = facts.column("total_quantity").to_pylist()
    assert all(isinstance(value, Decimal) for value in quantities)
    raw_quantity = scalar(pg_conn, "SELECT sum(quantity) FROM trades WHERE trade_time >= %s "
                          "AND trade_time < %s + interval '1 day'", day, day)
    assert sum(quantities) == raw_quantity
    report = json.loads(s3.get_object(
        Bucket=s3_bucket, Key="data_clean/quality_reports/year=2025/month=09/day=14/quality.json"
    )["Body"].read())
    assert report["passed"] is True
    assert set(report["symbols"]) == set(SYMBOLS)

    # The warehouse was loaded from the S3 partition and matches PostgreSQL's own figures.
    assert expected_minus_warehouse(pg_conn, day) == (0, 0)

    # A rerun writes new objects and deletes the old ones: still one file per table.
    run_day(day, settings)
    second = keys()
    assert len(second) == len(first)
    assert set(second) != set(first)  # new part files replaced the old ones
    assert expected_minus_warehouse(pg_conn, day) == (0, 0)
