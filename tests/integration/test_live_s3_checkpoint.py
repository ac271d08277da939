"""The live query's checkpoint on S3 (LIVE_CHECKPOINT_URI=s3://bucket/prefix) against moto's
S3-compatible server: an S3 that cannot be used is one line before Spark starts, nothing
written. The checkpoint written on S3 and resumed after a `kill -9` is tested in
test_live_bars.py, whose two `python -m live` runs use an S3 checkpoint (one Spark start each,
shared with the other faults, instead of two more here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from binance_etl.localpg import free_port

pytestmark = pytest.mark.integration

PREFIX = "live/checkpoint"
ROOT = Path(__file__).resolve().parents[2]


def checkpoint_keys(endpoint: str, bucket: str) -> list[str]:
    """The checkpoint's object keys under PREFIX, relative to it."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/")
    return sorted(item["Key"].removeprefix(PREFIX + "/") for item in answer.get("Contents", []))


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
