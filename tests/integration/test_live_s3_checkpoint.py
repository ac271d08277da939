"""The live query's checkpoint on S3 (LIVE_CHECKPOINT_URI=s3://bucket/prefix) against moto's
S3-compatible server: `python -m live` writes its checkpoint there through Spark's s3a (hadoop-aws
from Maven Central, the credentials and S3_ENDPOINT_URL of the environment), a `kill -9` and a
restart resume from it (batch ids go on; bars equal an independent aggregation of the raw table,
nothing counted twice), and an S3 that cannot be used is one line before Spark starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from binance_etl.db import connect, with_database
from binance_etl.localpg import free_port
from binance_etl.schema import migrate
from live.offsets import default_since
from tests.integration.test_live_bars import insert, last_batch, live_process, synthetic_trades
from tests.plugins.live import assert_bars_equal_raw, live_caught_up, wait_for

pytestmark = pytest.mark.integration

SYMBOL = "SYNUSDT"
PREFIX = "live/checkpoint"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_db(pg_server_url: str) -> Iterator[str]:
    """A database of this test's own (bars_1m and live_state start empty)."""
    name = f"test_s3live_{uuid.uuid4().hex[:8]}"
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    with connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkpoint_keys(endpoint: str, bucket: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/")
    return sorted(item["Key"].removeprefix(PREFIX + "/") for item in answer.get("Contents", []))


def test_an_s3_checkpoint_is_written_and_resumed_after_kill_9(
    fresh_db: str, s3_server: str, s3_bucket: str, tmp_path: Path,
) -> None:
    url = fresh_db
    yesterday = default_since(datetime.now(UTC))
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_trades_partition(%s)", (yesterday.date(),))
    insert(url, synthetic_trades(yesterday, range(1, 1500)))
    env = {**os.environ, "DATABASE_URL": url, "SYMBOLS": SYMBOL,
           "LIVE_CHECKPOINT_URI": f"s3://{s3_bucket}/{PREFIX}", "S3_ENDPOINT_URL": s3_server,
           "LIVE_TRIGGER_SECONDS": "0.5", "SPARK_MASTER": "local[2]"}
    log = tmp_path / "live.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(live_process(env, log))
        wait_for(lambda: live_caught_up(url, [SYMBOL], yesterday), "the first run's bars", 240)
        # Spark records the commit right after the sink has returned
        wait_for(lambda: "commits/0" in checkpoint_keys(s3_server, s3_bucket), "commits/0", 60)
        keys = checkpoint_keys(s3_server, s3_bucket)
        assert {"metadata", "offsets/0", "commits/0"} <= set(keys), keys

        insert(url, synthetic_trades(yesterday, range(1500, 2200)))  # in flight at the kill
        os.killpg(processes[0].pid, signal.SIGKILL)  # driver, JVM and Python workers
        processes[0].wait(30)
        killed_at = last_batch(url)
        assert killed_at >= 0
        insert(url, synthetic_trades(yesterday, range(2200, 3000)))  # while nothing runs

        processes.append(live_process(env, log))
        wait_for(lambda: live_caught_up(url, [SYMBOL], yesterday), "the restarted run's bars",
                 240)
        # Resumed from the S3 checkpoint: its batch ids go on (a new checkpoint starts at 0).
        assert last_batch(url) > killed_at
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(60) == 0, log.read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
    assert "live bars: batches" in log.read_text()  # the clean stop's summary
    commits = [key for key in checkpoint_keys(s3_server, s3_bucket) if key.startswith("commits/")]
    assert max(int(key[8:]) for key in commits if key[8:].isdigit()) >= killed_at + 1
    assert assert_bars_equal_raw(url, [SYMBOL], yesterday) == 3  # 3000 trades × 50 ms


def run_live_briefly(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "live", "--duration", "5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("fault", ["no credentials", "unreachable endpoint", "no bucket"])
def test_an_s3_checkpoint_that_cannot_be_used_is_one_line(
    fault: str, s3_server: str, s3_bucket: str, pg_url: str,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"DATABASE_URL": pg_url, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "LIVE_CHECKPOINT_URI": f"s3://{s3_bucket}/{PREFIX}", "S3_ENDPOINT_URL": s3_server})
    if fault != "no credentials":
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    if fault == "unreachable endpoint":
        env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    if fault == "no bucket":
        env["LIVE_CHECKPOINT_URI"] = f"s3://missing-{s3_bucket}/{PREFIX}"
    result = run_live_briefly(env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = {"no credentials": "no AWS credentials",
                "unreachable endpoint": "is unreachable",
                "no bucket": "the bucket does not exist"}[fault]
    assert lines[0].startswith("LIVE_CHECKPOINT_URI s3://"), lines[0]
    assert expected in lines[0], lines[0]
    assert checkpoint_keys(s3_server, s3_bucket) == []  # nothing written anywhere
