"""`scripts/stack.py` (the compose stack as plain processes): its process handling and parsing.
The Airflow integration tests start real Airflow processes through the same helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts.stack import (
    AirflowSetup,
    ProcessGroup,
    StackError,
    feed_urls_from_log,
    healthy,
    lake_bucket,
    sqlalchemy_url,
    wait_until,
)


def test_process_group_starts_records_and_stops_a_process_tree(tmp_path: Path):
    group = ProcessGroup(tmp_path)
    # A parent that forks a child: stopping the group must end both.
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
             "'import time; time.sleep(60)']); print('ready', flush=True); time.sleep(60)"
    handle = group.start("sleeper", [sys.executable, "-c", script], {"PATH": "/usr/bin:/bin"})
    wait_until(lambda: "ready" in handle.log.read_text(), "the sleeper", 30, [handle])
    assert group.handle("sleeper") == handle
    assert group.names() == ["sleeper"]
    assert group.stop("sleeper", timeout=10) is True
    assert not handle.alive()
    assert group.handle("sleeper") is None
    assert group.stop("sleeper") is False  # nothing left to stop


def test_a_stale_pid_file_is_ignored(tmp_path: Path):
    (tmp_path / "ghost.pid").write_text("999999 12345\n")
    assert ProcessGroup(tmp_path).handle("ghost") is None
    assert not (tmp_path / "ghost.pid").exists()


def test_wait_until_reports_a_dead_process_with_its_log(tmp_path: Path):
    group = ProcessGroup(tmp_path)
    handle = group.start("crash", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                         {"PATH": "/usr/bin:/bin"})
    with pytest.raises(StackError, match=r"(?s)crash died.*boom"):
        wait_until(lambda: None, "something", 30, [handle])


def test_feed_urls_come_from_the_replay_line(tmp_path: Path):
    log = tmp_path / "replay.log"
    assert feed_urls_from_log(log) is None
    log.write_text("2026-11-26 INFO starting\n")
    assert feed_urls_from_log(log) is None
    log.write_text(
        "BINANCE_WS_URL=ws://127.0.0.1:1111 BINANCE_REST_URL=http://127.0.0.1:1111 "
        "BINANCE_DATA_URL=http://127.0.0.1:1111\nlater restart:\n"
        "BINANCE_WS_URL=ws://127.0.0.1:2222 BINANCE_REST_URL=http://127.0.0.1:2222 "
        "BINANCE_DATA_URL=http://127.0.0.1:2222\n"
    )
    assert feed_urls_from_log(log) == {"ws": "ws://127.0.0.1:2222", "rest": "http://127.0.0.1:2222"}


def test_metadata_urls_use_the_psycopg_driver():
    assert sqlalchemy_url("postgresql://postgres@127.0.0.1:5432/airflow") == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/airflow"
    )
    assert sqlalchemy_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    with pytest.raises(StackError):
        sqlalchemy_url("mysql://h/db")


def test_health_report_needs_every_component():
    report = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"},
              "dag_processor": {"status": "unhealthy"}, "triggerer": {"status": None}}
    assert healthy(report, ["api-server", "scheduler"])
    assert not healthy(report, ["scheduler", "dag-processor"])
    assert not healthy(report, ["triggerer"])


def test_lake_bucket():
    assert lake_bucket("s3://binance-lake/lake") == "binance-lake"
    assert lake_bucket("s3a://b/x") == "b"
    assert lake_bucket("./data/lake") is None


def test_airflow_environment_is_consistent(tmp_path: Path):
    setup = AirflowSetup(home=tmp_path, sql_alchemy_conn="postgresql+psycopg://h/airflow",
                         api_port=18080, jwt_secret="j", secret_key="s", fernet_key="f")
    env = setup.env({"LAKE_URI": "/tmp/lake"}, base={"PATH": "/bin"})
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == env[
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW_CONFIG"].endswith("airflow.cfg")
    assert Path(env["AIRFLOW_CONFIG"]).is_file()
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "j"
    assert env["LAKE_URI"] == "/tmp/lake"
    assert env["PATH"] == "/bin"
