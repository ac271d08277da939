"""`make stack` (the compose stack as plain processes): the Procfile honcho runs, the environment
scripts/stack.py writes for it, and the start/stop of honcho's process tree. The Airflow
integration tests start the Procfile's Airflow lines through the same helpers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from honcho.environ import parse

from binance_etl.settings import Settings
from scripts.stack import (
    AIRFLOW_PROCESSES,
    PROCFILE,
    REPO,
    AirflowSetup,
    StackError,
    healthy,
    main,
    pid_alive,
    procfile_names,
    read_env_file,
    selected_processes,
    sqlalchemy_url,
    stack_env,
    start_honcho,
    stop_honcho,
    wait_until,
    write_env_file,
)

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
# Compose services whose process the Procfile runs under another name (or before honcho).
PROCFILE_NAME = {"minio": "s3"}
BEFORE_HONCHO = {"postgres"}  # started by scripts/stack.py: it daemonises itself
ONE_SHOT = {"minio-init", "airflow-init"}  # in `s3` (bucket) and `up` (db migrate)


def _setup(tmp_path: Path) -> AirflowSetup:
    return AirflowSetup(
        home=tmp_path / "airflow", sql_alchemy_conn="postgresql+psycopg://u@127.0.0.1:5/airflow",
        api_port=18080, jwt_secret="jwt", secret_key="key", fernet_key="fernet",
        log_server_port=18793, triggerer_log_server_port=18794)


def _env(tmp_path: Path, *, lake: str = "s3", feed: bool = True, **settings: Any
         ) -> dict[str, str]:
    values = {"symbols": "btcusdt,ETHUSDT", "lake_uri": "./data/lake", **settings}
    return stack_env(_setup(tmp_path), Settings(_env_file=None, **values),  # type: ignore[call-arg]
                     database_url="postgresql://postgres@127.0.0.1:5/postgres", lake=lake,
                     feed=feed, s3_port=19000, feed_port=19001, rate=50)


def _procfile_commands() -> dict[str, list[list[str]]]:
    """Each Procfile line as its `&&`-separated commands, split like the shell splits them."""
    from honcho.environ import parse_procfile

    processes = parse_procfile(PROCFILE.read_text()).processes
    return {name: [shlex.split(part) for part in command.split("&&")]
            for name, command in processes.items()}


@pytest.fixture(scope="module")
def airflow_commands(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-cli")))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        from airflow.cli.cli_config import core_commands

        return {command.name for command in core_commands}


def test_every_procfile_command_exists(airflow_commands: set[str], capsys: pytest.CaptureFixture):
    stack_commands = {"s3", "wait-http"}
    for name, commands in _procfile_commands().items():
        for argv in commands:
            if argv[0] == "exec":
                argv = argv[1:]
            if argv[0] == "airflow":
                assert argv[1] in airflow_commands, f"{name}: airflow {argv[1]}"
            elif argv[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(argv[2]) is not None, f"{name}: {argv[2]}"
            elif argv[:2] == ["python", "$STACK_SCRIPT"]:
                assert argv[2] in stack_commands, f"{name}: {argv[2]}"
                with pytest.raises(SystemExit) as usage:
                    main([argv[2], "--help"])
                assert usage.value.code == 0
            elif argv[0] == "python":
                assert (REPO / argv[1]).is_file(), f"{name}: {argv[1]}"
            else:
                pytest.fail(f"{name}: unchecked command {argv}")


def test_procfile_runs_every_long_running_compose_service():
    """The compose services (but the spark profile, PostgreSQL and the one-shot inits) are the
    Procfile's processes, under the same name; the Airflow ones with the same subcommand."""
    commands = _procfile_commands()
    for service, spec in COMPOSE["services"].items():
        if "profiles" in spec or service in BEFORE_HONCHO | ONE_SHOT:
            continue
        name = PROCFILE_NAME.get(service, service)
        assert name in commands, f"compose service {service} has no Procfile line"
        if spec.get("command", [""])[0] == "airflow":
            airflow = [argv[argv.index("airflow"):] for argv in commands[name]
                       if "airflow" in argv[:2]]
            assert [argv[:2] for argv in airflow] == [spec["command"][:2]], (service, airflow)
    assert set(AIRFLOW_PROCESSES) <= set(commands)


def test_every_variable_the_procfile_uses_is_in_the_stack_env(tmp_path: Path):
    env = _env(tmp_path)
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", PROCFILE.read_text()))
    assert used, "the Procfile uses the env file's variables"
    assert used <= set(env), used - set(env)


def test_stack_env_gives_what_compose_gives(tmp_path: Path):
    """The project's variables of compose's `x-project-env` and the Airflow ones of
    `x-airflow` all have a value in the stack's env, pointing at the stack's own parts."""
    env = _env(tmp_path)
    compose_project = set(COMPOSE["x-project-env"])
    compose_airflow = set(COMPOSE["x-airflow"]["environment"]) - compose_project
    assert compose_project | compose_airflow <= set(env), (compose_project | compose_airflow) - \
        set(env)
    assert env["SYMBOLS"] == "BTCUSDT,ETHUSDT"  # the user's settings pass through, normalised
    assert env["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5/postgres"
    assert env["LAKE_URI"] == "s3://binance-lake/lake"
    assert env["S3_ENDPOINT_URL"] == f"http://127.0.0.1:{env['STACK_S3_PORT']}"
    assert env["STACK_BUCKET"] == "binance-lake"
    assert env["SPARK_REMOTE"] == f"sc://127.0.0.1:{env['STACK_SPARK_CONNECT_PORT']}"
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])  # the lake's S3 inside Airflow
    assert connection["extra"]["endpoint_url"] == env["S3_ENDPOINT_URL"]
    assert env["BINANCE_WS_URL"] == f"ws://127.0.0.1:{env['STACK_REPLAY_PORT']}"
    assert env["BINANCE_REST_URL"] == f"http://127.0.0.1:{env['STACK_REPLAY_PORT']}"
    assert env["WAREHOUSE_URL"] == ""  # unset, as compose passes it: the local warehouse
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == env[
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["AIRFLOW_CONFIG"] == str(REPO / "airflow.cfg")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # `airflow`
    assert Path(env["STACK_SCRIPT"]).is_file()


def test_stack_env_keeps_a_configured_bucket_a_local_lake_and_binance(tmp_path: Path):
    env = _env(tmp_path, lake_uri="s3://my-bucket/prefix")
    assert (env["LAKE_URI"], env["STACK_BUCKET"]) == ("s3://my-bucket/prefix", "my-bucket")
    local = _env(tmp_path, lake="local", feed=False, lake_uri="data/lake",
                 binance_ws_url="wss://stream.binance.com:9443")
    assert local["LAKE_URI"] == str(Path("data/lake").resolve())
    assert "S3_ENDPOINT_URL" not in local
    assert local["BINANCE_WS_URL"] == "wss://stream.binance.com:9443"


def test_env_file_round_trips_through_honchos_parser(tmp_path: Path):
    values = {"PLAIN": "x", "HASH": "a#b", "SPACES": "a b  c", "QUOTES": "it's \"q\"",
              "SPARK_MASTER": "local[*]", "DOLLAR": "$HOME", "EQUALS": "k=v==",
              "URL": "postgresql+psycopg://u:p%40ss@127.0.0.1:5432/airflow?x=1&y=2",
              "EMPTY": ""}
    path = tmp_path / "stack.env"
    write_env_file(path, values)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the stack's secrets
    parsed = read_env_file(path)
    assert {k: v for k, v in parsed.items() if k != "EMPTY"} == {
        k: v for k, v in values.items() if k != "EMPTY"}
    assert parsed.get("EMPTY", "") == ""  # honcho drops `NAME=''`: unset, like compose's empty
    assert parse(path.read_text()) == parsed


def test_selected_processes_follow_the_options():
    everything = procfile_names()
    assert selected_processes(lake="s3", feed=True) == everything
    assert "s3" not in selected_processes(lake="local", feed=True)
    without_feed = selected_processes(lake="s3", feed=False)
    assert "replay" not in without_feed
    assert "streamer" not in without_feed
    assert set(AIRFLOW_PROCESSES) <= set(without_feed)


def test_honcho_starts_and_stops_a_process_tree(tmp_path: Path):
    """honcho (started and stopped by the stack's helpers) ends each line's process and the
    children it forked; it passes the env file's variables."""
    procfile = tmp_path / "Procfile"
    parent = ("import os, subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(120)']); print('pids', os.getpid(), child.pid, "
              "os.environ['GREETING'], flush=True); time.sleep(120)")
    procfile.write_text(f"tree: {shlex.quote(sys.executable)} -c {shlex.quote(parent)}\n"
                        f"other: {shlex.quote(sys.executable)} -c 'import time; time.sleep(120)'\n")
    env_file = tmp_path / "test.env"
    write_env_file(env_file, {"GREETING": "hello world"})
    log = tmp_path / "honcho.log"
    honcho = start_honcho(env_file, ["tree", "other"], log, cwd=tmp_path, procfile=procfile)
    try:
        line = wait_until(lambda: re.search(r"pids (\d+) (\d+) hello world", log.read_text()),
                          "the process tree", 60, alive=lambda: honcho.poll() is None, log=log)
        pids = [int(line.group(1)), int(line.group(2))]
        assert all(pid_alive(pid) for pid in pids)
    finally:
        stop_honcho(honcho.pid, timeout=30)
    assert honcho.wait(timeout=10) is not None
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), "the tree to end", 10)
    assert "other.1 stopped" in log.read_text()


def test_processes_get_more_than_honchos_own_5_s_to_stop(tmp_path: Path):
    """A process that needs 6 s after SIGTERM (Airflow's scheduler stopping its tasks, the
    streamer flushing) finishes its work: the stack runs honcho with GRACE_SECONDS."""
    procfile = tmp_path / "Procfile"
    slow = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(6), "
            "print('flushed', flush=True), sys.exit(0))); print('ready', flush=True); "
            "time.sleep(120)")
    # honcho's clock starts when the first process has stopped: `fast` stops at once.
    procfile.write_text(f"slow: exec {shlex.quote(sys.executable)} -c {shlex.quote(slow)}\n"
                        "fast: exec sleep 120\n")
    env_file = tmp_path / "test.env"
    write_env_file(env_file, {})
    log = tmp_path / "honcho.log"
    honcho = start_honcho(env_file, ["slow", "fast"], log, cwd=tmp_path, procfile=procfile)
    try:
        wait_until(lambda: "ready" in log.read_text(), "the slow process", 60,
                   alive=lambda: honcho.poll() is None, log=log)
    finally:
        stop_honcho(honcho.pid, timeout=60)
    output = log.read_text()
    assert "flushed" in output, output
    assert "slow.1 stopped (rc=0)" in output, output
    assert "SIGKILL" not in output


def test_wait_until_reports_a_stopped_process_with_its_log(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("boom: port taken\n")
    with pytest.raises(StackError, match=r"(?s)stopped while waiting for Airflow.*boom"):
        wait_until(lambda: None, "Airflow", 30, alive=lambda: False, log=log)
    with pytest.raises(StackError, match="timed out"):
        wait_until(lambda: None, "nothing", 0.3)


def test_metadata_urls_use_the_psycopg_driver():
    assert sqlalchemy_url("postgresql://u:p@h:5/airflow") == "postgresql+psycopg://u:p@h:5/airflow"
    with pytest.raises(StackError):
        sqlalchemy_url("mysql://u@h/airflow")


def test_health_report_needs_every_airflow_process():
    good = {"status": "healthy"}
    report = {"scheduler": good, "dag_processor": good, "triggerer": {"status": "unhealthy"}}
    assert healthy(report, ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor"])
    assert not healthy(report, AIRFLOW_PROCESSES)
    assert not healthy({}, ["airflow-scheduler"])
