"""`make stack`: the docker-compose stack as plain processes, on Airflow's own commands and honcho.

    python scripts/stack.py up [--port 8080] [--rate 50] [--lake s3|local] [--no-feed]
                               [--foreground]
    python scripts/stack.py status
    python scripts/stack.py down

The processes are the `Procfile`'s, run by honcho (`honcho start`): Airflow's api-server,
scheduler, dag-processor and triggerer, moto's S3 server with the lake's bucket, the replay feed
and the streamer. What this file does is the part honcho cannot: start the project's PostgreSQL
first (it daemonises itself; raw trades, the warehouse schema, Airflow's metadata database
`airflow`), write the environment every process gets to `.local/stack/stack.env` (the same
variables docker-compose.yaml gives its services, free ports, generated Airflow secrets), run
`airflow db migrate`, then start honcho in the background (or in the foreground) and wait until
Airflow is healthy. `down` stops honcho (which stops its processes) and the PostgreSQL server if
`up` started it. Airflow's CLI against the stack:
`.venv/bin/honcho -e .local/stack/stack.env run airflow ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from binance_etl.settings import Settings

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
PROCFILE = REPO / "Procfile"
STACK_DIR = REPO / ".local" / "stack"
AIRFLOW_PROCESSES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                     "airflow-triggerer")
FEED_PROCESSES = ("replay", "streamer")
ADMIN_USER = "admin"
DEFAULT_BUCKET = "binance-lake"
S3_CREDENTIALS = {  # moto accepts any; the conventional placeholders
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class StackError(RuntimeError):
    """A part of the stack that did not start or stop; the message says which and where to look."""


# -- the environment -------------------------------------------------------------------------


def sqlalchemy_url(pg_url: str) -> str:
    """A libpq-style URL as SQLAlchemy's psycopg 3 dialect (`postgresql+psycopg://`)."""
    if urlsplit(pg_url).scheme not in ("postgresql", "postgres"):
        raise StackError(f"not a PostgreSQL URL: {urlsplit(pg_url).scheme}://...")
    return "postgresql+psycopg://" + pg_url.split("://", 1)[1]


@dataclass(frozen=True)
class AirflowSetup:
    """Everything that makes Airflow's processes agree with each other."""

    home: Path
    sql_alchemy_conn: str
    api_port: int
    jwt_secret: str
    secret_key: str
    fernet_key: str
    log_server_port: int
    triggerer_log_server_port: int
    dags_folder: Path = REPO / "dags"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def env(self) -> dict[str, str]:
        """Airflow's variables: the repository's airflow.cfg + this machine's values."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            # Airflow derives `postgresql+asyncpg` otherwise, a driver the project does not
            # install; SQLAlchemy's psycopg dialect serves async engines too.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.sql_alchemy_conn,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": self.secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.triggerer_log_server_port),
        }


def project_env(
    *, database_url: str, lake_uri: str, s3_endpoint: str | None, feed_port: int | None,
    settings: Mapping[str, str],
) -> dict[str, str]:
    """The project's variables, as docker-compose.yaml's `x-project-env` gives its services:
    the stack's own database, lake and (with the feed) Binance URLs; the rest from `settings`
    (the user's environment / `.env`), empty when unset, as compose passes them."""
    env = {name: settings.get(name, "") for name in (
        "SYMBOLS", "BINANCE_WS_URL", "BINANCE_REST_URL", "BINANCE_DATA_URL", "WAREHOUSE_URL",
        "REDSHIFT_IAM_ROLE", "SPARK_MASTER", "SPARK_REMOTE", "AIRFLOW_START_DATE",
        "AIRFLOW_WAIT_FOR_RAW_DAY")}
    env.update({"DATABASE_URL": database_url, "LAKE_URI": lake_uri})
    if s3_endpoint:
        env.update(S3_CREDENTIALS, S3_ENDPOINT_URL=s3_endpoint)
    if feed_port:
        feed = f"127.0.0.1:{feed_port}"
        env.update(BINANCE_WS_URL=f"ws://{feed}", BINANCE_REST_URL=f"http://{feed}",
                   BINANCE_DATA_URL=f"http://{feed}")
    return env


def procfile_env() -> dict[str, str]:
    """What every Procfile line needs: this environment's commands first on PATH (`airflow`,
    `python`), and STACK_SCRIPT, this file (the `s3` and `wait-http` helpers)."""
    return {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                     os.environ.get("PATH", os.defpath)]),
            "STACK_SCRIPT": str(Path(__file__).resolve())}


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """`NAME='value'` lines (honcho's `-e` format; shell-quoted so `#`, spaces, `*` survive),
    readable by the owner only: the file holds the stack's secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    path.write_text("# written by scripts/stack.py up; do not edit\n" + "\n".join(lines) + "\n")


def read_env_file(path: Path) -> dict[str, str]:
    from honcho.environ import parse

    return dict(parse(path.read_text()))


def procfile_names(procfile: Path = PROCFILE) -> list[str]:
    """The process names of the Procfile, in order (honcho's own parser)."""
    from honcho.environ import parse_procfile

    return list(parse_procfile(procfile.read_text()).processes)


def selected_processes(*, lake: str, feed: bool, procfile: Path = PROCFILE) -> list[str]:
    """The Procfile's processes `up` starts: without `s3` for a local lake, without the replay
    feed and the streamer for `--no-feed`."""
    skip = set() if lake == "s3" else {"s3"}
    if not feed:
        skip |= set(FEED_PROCESSES)
    return [name for name in procfile_names(procfile) if name not in skip]


# -- processes -------------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], T | None], what: str, timeout: float,
               alive: Callable[[], bool] = lambda: True, log: Path | None = None) -> T:
    """Poll `check()` until it returns a truthy value; fail early when `alive()` turns false."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"stopped while waiting for {what}{_tail(log)}")
        try:
            result = check()
        except (httpx.HTTPError, OSError) as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(0.5)
    detail = f" (last error: {last_error})" if last_error else ""
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{_tail(log)}")


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    end = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; {log} ends with:\n" + "\n".join(end)


GRACE_SECONDS = 60  # compose's stop_grace_period for the streamer; Airflow's scheduler needs >5 s


def honcho_command(env_file: Path, names: Sequence[str], procfile: Path = PROCFILE) -> list[str]:
    """`honcho start` of these Procfile processes with the stack's environment file (through
    `run_honcho`, for a longer grace period than honcho's own)."""
    return [sys.executable, str(Path(__file__).resolve()), "honcho", "--no-colour", "-f",
            str(procfile), "-e", str(env_file), "start", *names]


def run_honcho(argv: Sequence[str], grace: float = GRACE_SECONDS) -> None:
    """honcho's own command line, with `grace` seconds between its SIGTERM to the processes and
    its SIGKILL: honcho's fixed 5 s (`honcho.manager.KILL_WAIT`, a module constant it reads at
    each check) cuts Airflow's scheduler and triggerer short while they stop their tasks."""
    import honcho.command
    import honcho.manager

    honcho.manager.KILL_WAIT = grace  # type: ignore[attr-defined]
    honcho.command.main(list(argv))


def start_honcho(env_file: Path, names: Sequence[str], log: Path, *, cwd: Path = REPO,
                 env: Mapping[str, str] | None = None,
                 procfile: Path = PROCFILE) -> subprocess.Popen[bytes]:
    """honcho in its own session, the (prefixed) output of every process appended to `log`;
    the processes run in `cwd` with `env` (default: ours) plus the env file's variables."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(honcho_command(env_file, names, procfile), cwd=cwd,
                                env=None if env is None else dict(env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs and is not a zombie (a child of ours not yet reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_honcho(pid: int, timeout: float = GRACE_SECONDS + 30) -> None:
    """SIGTERM honcho: it SIGTERMs each process group it started and SIGKILLs what is left
    after GRACE_SECONDS; `timeout` bounds the wait for it before honcho itself is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def airflow_health(api_url: str) -> dict[str, object]:
    response = httpx.get(f"{api_url}/api/v2/monitor/health", timeout=5)
    response.raise_for_status()
    return dict(response.json())


def healthy(health: Mapping[str, object], processes: Iterable[str]) -> bool:
    """True when the health report says every named Airflow process is healthy."""
    keys = {"airflow-scheduler": "scheduler", "airflow-dag-processor": "dag_processor",
            "airflow-triggerer": "triggerer"}
    for name in processes:
        key = keys.get(name)
        if key is None:
            continue
        status = health.get(key)
        if not isinstance(status, dict) or status.get("status") != "healthy":
            return False
    return True


def run_airflow(args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 300
                ) -> subprocess.CompletedProcess[str]:
    """Run Airflow's CLI (the console script beside this interpreter) to completion."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow, *args], env=dict(env), cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise StackError(f"airflow {' '.join(args)} exited {result.returncode}:\n"
                         + "\n".join(output[-30:]))
    return result


def ensure_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` unless it exists; returns its URL."""
    from binance_etl.db import connect, with_database

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise StackError(f"unsafe database name {name!r}")
    with connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


# -- S3: the `s3` line of the Procfile ---------------------------------------------------------


def serve_s3(port: int, bucket: str) -> int:
    """moto's S3 server on 127.0.0.1 with the lake's bucket (moto keeps it in memory, so it is
    created here, at each start) until SIGTERM/SIGINT."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                     aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                     ).create_bucket(Bucket=bucket)
        print(f"S3_ENDPOINT_URL={endpoint} bucket {bucket}", flush=True)
        while not stop:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


# -- the stack -------------------------------------------------------------------------------


def stack_secrets(path: Path) -> dict[str, str]:
    """Airflow's JWT secret, API secret key and Fernet key: generated once, kept (mode 0600)."""
    if path.exists():
        return dict(json.loads(path.read_text()))
    from cryptography.fernet import Fernet

    values = {"jwt_secret": secrets.token_urlsafe(32), "secret_key": secrets.token_urlsafe(32),
              "fernet_key": Fernet.generate_key().decode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(values) + "\n")
    return values


def settings_env(settings: Settings) -> dict[str, str]:
    """The user's project settings (environment / `.env`) as variables, for `project_env`."""
    return {
        "SYMBOLS": ",".join(settings.symbols),
        "BINANCE_WS_URL": settings.binance_ws_url,
        "BINANCE_REST_URL": settings.binance_rest_url,
        "BINANCE_DATA_URL": settings.binance_data_url,
        "WAREHOUSE_URL": settings.warehouse_url or "",
        "REDSHIFT_IAM_ROLE": settings.redshift_iam_role or "",
        "SPARK_MASTER": settings.spark_master,
        "SPARK_REMOTE": settings.spark_remote or "",
        "AIRFLOW_START_DATE": settings.airflow_start_date,
        "AIRFLOW_WAIT_FOR_RAW_DAY": str(settings.airflow_wait_for_raw_day).lower(),
    }


def stack_env(setup: AirflowSetup, settings: Settings, *, database_url: str, lake: str,
              feed: bool, s3_port: int, feed_port: int, rate: int,
              dashboard_port: int = 8050, spark_connect_port: int = 15002) -> dict[str, str]:
    """Every variable of the Procfile's processes: what they need to run, Airflow's, the
    project's (as compose gives them), and the Procfile's own parameters."""
    if lake == "s3":
        configured = urlsplit(settings.lake_uri)
        bucket = configured.netloc if configured.scheme in ("s3", "s3a") else DEFAULT_BUCKET
        lake_uri = settings.lake_uri if bucket == configured.netloc else f"s3://{bucket}/lake"
    else:
        bucket = DEFAULT_BUCKET
        lake_uri = settings.lake_uri if "://" in settings.lake_uri else str(
            Path(settings.lake_uri).resolve())
    return {
        **procfile_env(),
        **setup.env(),
        **project_env(database_url=database_url, lake_uri=lake_uri,
                      s3_endpoint=f"http://127.0.0.1:{s3_port}" if lake == "s3" else None,
                      feed_port=feed_port if feed else None, settings=settings_env(settings)),
        # Inside Airflow the lake's S3 comes from the connection aws_default (as in compose).
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws",
            "login": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "password": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "extra": {"region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                      "endpoint_url": f"http://127.0.0.1:{s3_port}"},
        }),
        "STACK_S3_PORT": str(s3_port), "STACK_BUCKET": bucket,
        "STACK_REPLAY_PORT": str(feed_port), "STACK_REPLAY_RATE": str(rate),
        "STACK_DASHBOARD_PORT": str(dashboard_port),
        "STACK_SPARK_CONNECT_PORT": str(spark_connect_port),
        "LIVE_CHECKPOINT_URI": str(STACK_DIR / "live" / "checkpoint"),
        # The batch's tasks use the stack's Spark Connect server, as under compose; a
        # SPARK_REMOTE of the user's own wins.
        "SPARK_REMOTE": settings.spark_remote or f"sc://127.0.0.1:{spark_connect_port}",
    }


class Stack:
    """`up`, `down` and `status` over the files in `.local/stack/`."""

    def __init__(self, run_dir: Path = STACK_DIR) -> None:
        self.run_dir = run_dir
        self.env_file = run_dir / "stack.env"
        self.state_file = run_dir / "state.json"
        self.log = run_dir / "stack.log"

    def state(self) -> dict[str, object]:
        return dict(json.loads(self.state_file.read_text())) if self.state_file.exists() else {}

    def _save(self, state: Mapping[str, object]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    def running_pid(self) -> int | None:
        pid = self.state().get("honcho_pid")
        return pid if isinstance(pid, int) and pid_alive(pid) else None

    def prepare(self, *, port: int, rate: int, lake: str, feed: bool
                ) -> tuple[dict[str, str], list[str]]:
        """PostgreSQL, the env file, the metadata migration: all before honcho starts."""
        from binance_etl.db import connect, with_database
        from binance_etl.localpg import LocalPostgres, free_port
        from binance_etl.schema import migrate
        from binance_etl.settings import load_settings

        settings = load_settings()
        state = self.state()
        if settings.database_url:
            raw_url = settings.database_url
            server_url = with_database(raw_url, "postgres")
        else:
            server = LocalPostgres(settings.local_pg_dir)
            was_running = server.status() is not None
            server_url = raw_url = server.ensure_running()
            state["started_postgres"] = bool(state.get("started_postgres")) or not was_running
        with connect(raw_url, autocommit=True) as conn:
            migrate(conn, ahead_days=settings.partitions_ahead_days)
        metadata_url = ensure_database(server_url, "airflow")

        if not port_free(port):
            raise StackError(f"port {port} is taken; choose another with --port")
        keys = stack_secrets(self.run_dir / "airflow" / "secrets.json")
        setup = AirflowSetup(
            home=self.run_dir / "airflow", sql_alchemy_conn=sqlalchemy_url(metadata_url),
            api_port=port, jwt_secret=keys["jwt_secret"], secret_key=keys["secret_key"],
            fernet_key=keys["fernet_key"], log_server_port=free_port(),
            triggerer_log_server_port=free_port())
        env = stack_env(setup, settings, database_url=raw_url, lake=lake, feed=feed,
                        s3_port=free_port(), feed_port=free_port(), rate=rate,
                        dashboard_port=8050 if port_free(8050) else free_port(),
                        spark_connect_port=15002 if port_free(15002) else free_port())
        write_env_file(self.env_file, env)
        names = selected_processes(lake=lake, feed=feed)
        print("preparing Airflow's metadata database (airflow db migrate)", flush=True)
        run_airflow(["db", "migrate"], {**os.environ, **env}, cwd=REPO)
        state.update({"api_url": setup.api_url, "processes": names, "lake_uri": env["LAKE_URI"],
                      "passwords_file": str(setup.passwords_file),
                      "s3_url": env.get("S3_ENDPOINT_URL", ""),
                      "feed_url": env["BINANCE_WS_URL"] if feed else "",
                      "dashboard_url": f"http://127.0.0.1:{env['STACK_DASHBOARD_PORT']}"})
        self._save(state)
        return env, names

    def up(self, *, port: int, rate: int, lake: str, feed: bool, foreground: bool) -> int:
        if self.running_pid() is not None:
            print(f"the stack is already up (honcho pid {self.running_pid()}); `make stack-down`"
                  " first to change it")
            self.print_status()
            return 0
        env, names = self.prepare(port=port, rate=rate, lake=lake, feed=feed)
        if foreground:
            command = honcho_command(self.env_file, names)
            print("$ " + shlex.join(command), flush=True)
            return subprocess.run(command, cwd=REPO, check=False).returncode
        honcho = start_honcho(self.env_file, names, self.log)
        state = self.state()
        state["honcho_pid"] = honcho.pid
        self._save(state)
        airflow = [name for name in names if name in AIRFLOW_PROCESSES]
        wait_until(lambda: healthy(airflow_health(str(state["api_url"])), airflow),
                   f"Airflow ({', '.join(airflow)}) to report healthy", 240,
                   alive=lambda: honcho.poll() is None, log=self.log)
        self.print_status()
        return 0

    def down(self) -> list[str]:
        from binance_etl.localpg import LocalPostgres
        from binance_etl.settings import load_settings

        stopped = []
        state = self.state()
        pid = self.running_pid()
        if pid is not None:
            stop_honcho(pid)
            stopped.append(f"honcho (pid {pid}) and its processes")
        if state.get("started_postgres"):
            if LocalPostgres(load_settings().local_pg_dir).stop():
                stopped.append("postgres")
        self.state_file.unlink(missing_ok=True)
        return stopped

    def print_status(self) -> None:
        state = self.state()
        pid = self.running_pid()
        names = state.get("processes")
        listed = ", ".join(str(name) for name in names) if isinstance(names, list) else "-"
        print(f"stack: {'running, honcho pid ' + str(pid) if pid else 'stopped'}"
              f"  processes: {listed}")
        if not pid:
            return
        password = None
        passwords = Path(str(state.get("passwords_file", "")))
        if passwords.is_file():
            password = json.loads(passwords.read_text() or "{}").get(ADMIN_USER)
        print(f"  Airflow UI  {state.get('api_url')}  user {ADMIN_USER}  password "
              f"{password or '(see ' + str(passwords) + ')'}")
        for label, key in (("S3 lake", "s3_url"), ("replay feed", "feed_url"),
                           ("dashboard", "dashboard_url")):
            if state.get(key):
                print(f"  {label:<11} {state[key]}")
        print(f"  lake        {state.get('lake_uri')}")
        print(f"  logs        {self.log} (every process, prefixed by its name)")
        print(f"  Airflow CLI {Path(sys.executable).with_name('honcho')} -e {self.env_file} "
              "run airflow dags list")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/stack.py",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (kept when already up)")
    up.add_argument("--port", type=int, default=8080, help="Airflow UI/API port (default 8080)")
    up.add_argument("--rate", type=int, default=50, help="replay feed: trades per second")
    up.add_argument("--lake", choices=["s3", "local"], default="s3",
                    help="s3: the lake on the local S3 server (like compose); local: LAKE_URI path")
    up.add_argument("--no-feed", dest="feed", action="store_false",
                    help="no replay feed and no streamer")
    up.add_argument("--foreground", action="store_true",
                    help="run honcho in this terminal (Ctrl-C stops the processes)")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="what runs, with URLs")
    wait = sub.add_parser("wait-http", help="(the Procfile's) wait until URL answers")
    wait.add_argument("url")
    wait.add_argument("--timeout", type=float, default=300)
    sub.add_parser("honcho", help="honcho's command line with a longer grace period",
                   add_help=False)
    s3 = sub.add_parser("s3", help="(the Procfile's s3 line) moto's S3 server with a bucket")
    s3.add_argument("--port", type=int, required=True)
    s3.add_argument("--bucket", required=True)
    args, rest = parser.parse_known_args(argv)
    if args.command == "honcho":
        run_honcho(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    stack = Stack()
    try:
        if args.command == "up":
            return stack.up(port=args.port, rate=args.rate, lake=args.lake, feed=args.feed,
                            foreground=args.foreground)
        if args.command == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "wait-http":
            wait_until(lambda: httpx.get(args.url, timeout=5).status_code < 500, args.url,
                       args.timeout)
        elif args.command == "s3":
            return serve_s3(args.port, args.bucket)
        else:
            stack.print_status()
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
