"""`airflow dags test daily_binance_etl` end to end: raw trades in PostgreSQL -> Spark -> the
Parquet lake -> the warehouse, run by Airflow's own CLI (SQLite metadata, no other process).

The run goes the way a deployment into an existing Airflow goes: the lake on S3 (moto's
server) through the connection `aws_default`, the warehouse through the Redshift Data API
(moto's `redshift-data`, tests/plugins/redshift_data.py) on the connection `redshift_default`,
both given as `AIRFLOW_CONN_*` JSON; no AWS credentials or endpoint anywhere else. The local
lake and the PostgreSQL warehouse under Airflow are covered by test_airflow_backfill.py."""

from __future__ import annotations

import dataclasses
import io
import json
import secrets
import sqlite3
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from binance_etl.db import connect
from etl.dagrules import DAG_ID
from etl.redshift import redshift_day_steps
from etl.utils import TABLES
from tests.plugins.airflow import (
    REPO,
    SYMBOLS,
    AirflowCli,
    expected_facts,
    insert_day,
    insert_sentinels,
)
from tests.plugins.redshift_data import RedshiftDataServer

pytestmark = pytest.mark.integration

DAY = date(2025, 2, 3)  # a day no other test of the session writes
INCOMPLETE_DAY = date(2025, 2, 20)
ROLE = "arn:aws:iam::123456789012:role/redshift-copy"


def _task_states(cli: AirflowCli, day: date) -> dict[str, tuple[str, int]]:
    """State and try number of each task of the run whose conf names `day`."""
    with sqlite3.connect(_sqlite(cli)) as conn:
        rows = conn.execute(
            "SELECT ti.task_id, ti.state, ti.try_number FROM task_instance ti JOIN dag_run dr"
            " ON dr.run_id = ti.run_id AND dr.dag_id = ti.dag_id"
            " WHERE ti.dag_id = ? AND dr.conf LIKE ?",
            (DAG_ID, f"%{day.isoformat()}%"),
        ).fetchall()
    return {task: (state, tries) for task, state, tries in rows}


def _sqlite(cli: AirflowCli) -> str:
    return cli.setup.sql_alchemy_conn.removeprefix("sqlite:///")


def _connections_cli(cli: AirflowCli, endpoint: str, bucket: str, secret: str,
                     **extra: str) -> AirflowCli:
    """The session's Airflow CLI with the lake and the warehouse behind Airflow connections;
    AWS credentials and the endpoint exist only inside `AIRFLOW_CONN_AWS_DEFAULT`."""
    env = {k: v for k, v in cli.env.items()
           if not k.startswith(("AWS_", "AIRFLOW_CONN_")) and k != "S3_ENDPOINT_URL"}
    home = cli.setup.home
    env.update({
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "LAKE_URI": f"s3://{bucket}/lake",
        "AIRFLOW_WAREHOUSE": "redshift-data-api",
        "REDSHIFT_IAM_ROLE": ROLE,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "AKIADAGSTEST", "password": secret,
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}}),
        "AIRFLOW_CONN_REDSHIFT_DEFAULT": json.dumps({
            "conn_type": "redshift", "host": "trades.abc123.us-east-1.redshift.amazonaws.com",
            "schema": "analytics", "login": "etl_loader", "password": secret}),
    })
    env.update(extra)
    return dataclasses.replace(cli, env=env)


def _new_bucket(endpoint: str) -> tuple[str, Any]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return bucket, s3


def _xcom(cli: AirflowCli, task_id: str) -> Any:
    with sqlite3.connect(_sqlite(cli)) as conn:
        row = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value'"
            " ORDER BY timestamp DESC LIMIT 1", (DAG_ID, task_id)).fetchone()
    assert row is not None, task_id
    value = json.loads(row[0])
    return json.loads(value) if isinstance(value, str) else value


def _assert_secret_nowhere(cli: AirflowCli, secret: str, output: str, task_line: str) -> None:
    """Not in the task logs (`dags test` prints them: `task_line` is one of them), any log
    file, or the metadata database (XComs, rendered fields, run records: what the UI shows)."""
    assert task_line in output, output[-3000:]
    assert secret not in output
    logs = (cli.setup.home / "logs").rglob("*.log")
    assert not [str(path) for path in logs if secret in path.read_text(errors="replace")]
    assert secret.encode() not in Path(_sqlite(cli)).read_bytes()


def test_dags_test_loads_a_day_through_airflow_connections(
    airflow_sqlite_env: AirflowCli, pg_url: str, redshift_data: RedshiftDataServer
):
    with connect(pg_url, autocommit=True) as conn:
        next_ids = insert_day(conn, DAY, per_symbol=300)
        insert_sentinels(conn, DAY, next_ids)  # the stream passed the day's end: complete
    bucket, s3 = _new_bucket(redshift_data.endpoint)
    secret = f"dags-test-secret-{secrets.token_hex(8)}"
    cli = _connections_cli(airflow_sqlite_env, redshift_data.endpoint, bucket, secret)
    before = len(redshift_data.batches())

    started = time.monotonic()
    # No logical date: like a UI trigger, the day comes from the conf; the sensor really checks
    # raw_day_status against the test database.
    output = cli.run(
        "dags", "test", DAG_ID, "--conf", json.dumps({"date": DAY.isoformat()}), timeout=420
    )
    elapsed = time.monotonic() - started
    print(f"airflow dags test: {elapsed:.1f}s")
    assert "state=success" in output, output[-3000:]
    assert f"complete=True: {DAY} complete" in output

    assert {task: state for task, (state, _) in _task_states(cli, DAY).items()} == {
        "wait_for_raw_day": "success", "run_etl_pipeline": "success", "quality_gate": "success",
        "publish_lake": "success", "load_warehouse": "success",
    }
    # The lake: on the S3 server only aws_default names; the facts equal PostgreSQL's own
    # aggregation of the raw day.
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    partition = f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}"
    for table in TABLES:
        assert any(key.startswith(f"lake/{table}/{partition}/") for key in keys), table
    fact_key = next(key for key in keys if key.startswith(f"lake/fact_trades/{partition}/"))
    facts = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=fact_key)["Body"].read()))
    columns = ["symbol", "trade_minute", "trade_count", "min_price", "max_price",
               "total_quantity", "total_trade_value"]
    lake_rows = sorted(tuple(row[c] for c in columns) for row in facts.select(columns).to_pylist())
    with connect(pg_url, autocommit=True) as conn:
        expected = expected_facts(conn, DAY)
    assert len(expected) > 100  # many distinct minutes per symbol
    assert lake_rows == [tuple(row) for row in expected]
    assert {row[0] for row in lake_rows} == set(SYMBOLS)

    # The warehouse: one Data API batch with the day's statements, in order, on the cluster
    # and database the connection names; the task's XCom carries the batch id, not a secret.
    batches = redshift_data.batches()[before:]
    assert len(batches) == 1
    batch = batches[0]
    partitions = {t: f"s3://{bucket}/lake/{t}/{partition}/" for t in TABLES}
    assert batch.sqls == [step.sql for step in
                          redshift_day_steps("warehouse", DAY, partitions, ROLE)]
    assert (batch.cluster_identifier, batch.database, batch.db_user) == (
        "trades", "analytics", "etl_loader")
    loaded = _xcom(cli, "load_warehouse")
    assert (loaded["backend"], loaded["via"], loaded["statement_id"]) == (
        "redshift", "data-api", batch.id)

    _assert_secret_nowhere(cli, secret, output, "Redshift Data API batch")


def test_dags_test_fails_at_once_on_a_missing_connection(
    airflow_sqlite_env: AirflowCli, redshift_data: RedshiftDataServer
):
    """`redshift_default` is not defined: the first task that needs it fails without a retry,
    with one line naming the connection and its setting, before any Spark work."""
    bucket, _ = _new_bucket(redshift_data.endpoint)
    secret = f"dags-test-secret-{secrets.token_hex(8)}"
    cli = _connections_cli(airflow_sqlite_env, redshift_data.endpoint, bucket, secret,
                           AIRFLOW_REDSHIFT_CONN_ID="redshift_not_there")
    day = date(2025, 2, 5)

    try:
        output = cli.run("dags", "test", DAG_ID, "--conf",
                         json.dumps({"date": day.isoformat(), "wait_for_raw_day": False}),
                         timeout=300)
    except Exception as error:  # the CLI may exit non-zero on a failed run
        output = str(error)

    states = _task_states(cli, day)
    assert states["run_etl_pipeline"] == ("failed", 1), states  # no retry
    assert states["load_warehouse"][0] == "upstream_failed"
    line = ("configuration error: AIRFLOW_REDSHIFT_CONN_ID: Airflow connection "
            "'redshift_not_there' is not defined")
    print(*[text for text in output.splitlines() if line in text], sep="\n")
    _assert_secret_nowhere(cli, secret, output, line)


def test_raw_day_sensor_times_out_with_a_clear_message(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """The sensor asks the real `raw_day_status`; the day has trades but the stream never
    passed its end, so it times out naming the day, the reason and the way out."""
    # In case this process imports Airflow first: not the user's ~/airflow.
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(REPO / "airflow.cfg"))
    from airflow.sdk.exceptions import AirflowSensorTimeout

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("AIRFLOW_WAIT_FOR_RAW_DAY", "true")
    with connect(pg_url, autocommit=True) as conn:
        insert_day(conn, INCOMPLETE_DAY, per_symbol=20)
    from dags.etl_dags import RawDaySensor

    sensor = RawDaySensor(task_id="wait_for_raw_day_probe", mode="poke", poke_interval=0.1,
                          timeout=0)
    run_time = datetime(2025, 2, 21, 4, tzinfo=UTC)
    context = {
        "dag_run": SimpleNamespace(data_interval_end=run_time, run_after=run_time, conf={}),
        "params": {"wait_for_raw_day": True},
    }
    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor.execute(context)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"raw trades of {INCOMPLETE_DAY} still incomplete" in message
    assert "no trade stored after the day's end" in message
    assert '"wait_for_raw_day": false' in message
