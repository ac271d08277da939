"""The batch submitted with spark-submit to a real standalone master + worker (127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest

from etl.spark import POSTGRES_JDBC_PACKAGE
from tests.integration.test_etl_pipeline import (
    SYMBOLS,
    expected_minus_warehouse,
    insert_day,
    parquet_files,
)
from tests.plugins.spark import StandaloneCluster, spark_home

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_spark_submit_on_standalone_cluster(
    spark_standalone: StandaloneCluster, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path
) -> None:
    day = date(2025, 9, 15)
    insert_day(pg_conn, day, per_symbol=300)
    lake = tmp_path / "lake"
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "DATABASE_URL": pg_url,
        "WAREHOUSE_URL": pg_url,
        "LAKE_URI": str(lake),
        "SYMBOLS": ",".join(SYMBOLS),
        "SPARK_MASTER": spark_standalone.url,
    }
    submit = spark_home() / "bin" / "spark-submit"
    result = subprocess.run(
        [str(submit), "--master", spark_standalone.url, "--packages", POSTGRES_JDBC_PACKAGE,
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.cores.max=2",
         "--conf", "spark.executor.memory=1g", "--conf", "spark.ui.enabled=false",
         str(ROOT / "etl" / "main.py"), "--date", day.isoformat()],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows read" in result.stdout
    assert "900" in result.stdout  # 3 symbols × 300 trades in the summary table
    assert len(parquet_files(lake, "fact_trades", day)) == 1
    assert expected_minus_warehouse(pg_conn, day) == (0, 0)
    # The work ran in an executor the worker launched for this application.
    executor_logs = list(spark_standalone.work_dir.glob("app-*/*/stderr"))
    assert executor_logs, "the worker launched no executor"
    assert any("Finished task" in log.read_text() for log in executor_logs)
