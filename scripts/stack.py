"""The docker-compose stack as plain processes, for a machine without Docker.

    python -m scripts.stack up [--port 8080] [--rate 50] [--lake s3|local] [--no-feed]
    python -m scripts.stack status
    python -m scripts.stack down

`up` starts, or keeps when already running: the project's PostgreSQL (`binance_etl.localpg`: raw
trades, the warehouse schema and Airflow's metadata database `airflow`), an S3-compatible server
(moto on 127.0.0.1, with the lake's bucket), Airflow's api-server, scheduler, dag-processor and
triggerer (LocalExecutor, the repository's `airflow.cfg`), the Binance-compatible replay feed and
the streamer pointed at it. Pid files and logs live in `.local/stack/`; `down` stops what `up`
started (the PostgreSQL server only if `up` started it). The helpers that run Airflow's processes
are reused by the Airflow integration tests, so the tests exercise this very code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from binance_etl.db import connect, with_database
from binance_etl.localpg import LocalPostgres, free_port
from binance_etl.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
STACK_DIR = REPO / ".local" / "stack"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
DEFAULT_BUCKET = "binance-lake"
S3_TEST_CREDENTIALS = {  # moto accepts any; these are the conventional placeholders
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class StackError(RuntimeError):
    """A part of the stack that did not start or stop; the message says which and where to look."""


# -- processes -------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (/proc), to tell our pid from a reused one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessHandle:
    name: str
    pid: int
    started: int  # /proc start ticks
    log: Path

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.started and not _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


class ProcessGroup:
    """Long-running processes with pid files and logs in one folder; each in its own session.

    A process is stopped through its process group (the pid it was started with), so the
    children it forked (Airflow's task supervisors, gunicorn/uvicorn workers) stop with it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def handle(self, name: str) -> ProcessHandle | None:
        """The running process recorded under `name`, or None (a stale pid file is removed)."""
        path = self._pidfile(name)
        if not path.exists():
            return None
        try:
            pid_text, started_text = path.read_text().split()
            log = self.log_dir / f"{name}.log"
            handle = ProcessHandle(name, int(pid_text), int(started_text), log)
        except ValueError:
            path.unlink(missing_ok=True)
            return None
        if not handle.alive():
            path.unlink(missing_ok=True)
            return None
        return handle

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> ProcessHandle:
        """Start `argv` in a new session, output appended to logs/<name>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd or REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = _start_ticks(process.pid)
        if started is None:
            raise StackError(f"{name} exited at once; see {log_path}")
        self._pidfile(name).write_text(f"{process.pid} {started}\n")
        logger.info("started %s (pid %s, log %s)", name, process.pid, log_path)
        return ProcessHandle(name, process.pid, started, log_path)

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """SIGTERM the process group, SIGKILL after `timeout`; True when something was running."""
        handle = self.handle(name)
        if handle is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while handle.alive() and time.monotonic() < deadline:
            _reap(handle.pid)
            time.sleep(0.2)
        if handle.alive():
            logger.warning(
                "%s (pid %s) ignored SIGTERM for %.0fs; killing", name, handle.pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.pid, signal.SIGKILL)
            _reap(handle.pid)
        # Children that outlived their leader (same process group) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pid, signal.SIGKILL)
        self._pidfile(name).unlink(missing_ok=True)
        logger.info("stopped %s (pid %s)", name, handle.pid)
        return True

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.run_dir.glob("*.pid"))


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (tests start them directly)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float, handles: Iterable[ProcessHandle] = ()
) -> T:
    """Poll `check()` until it returns a truthy value; fail early when a watched process died."""
    handles = list(handles)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for handle in handles:
            if not handle.alive():
                raise StackError(
                    f"{handle.name} died while waiting for {what}:\n{tail(handle.log)}"
                )
        try:
            result = check()
        except (httpx.HTTPError, OSError) as error:
            last_error = error
            result = None
        if result:
            return result
        time.sleep(0.5)
    detail = f" (last error: {last_error})" if last_error else ""
    logs = "\n".join(f"--- {h.name}\n{tail(h.log, 10)}" for h in handles)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{logs}")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# -- Airflow ---------------------------------------------------------------------------------


def sqlalchemy_url(pg_url: str) -> str:
    """A libpq-style URL as SQLAlchemy's psycopg 3 dialect (`postgresql+psycopg://`)."""
    parts = urlsplit(pg_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StackError(f"not a PostgreSQL URL: {parts.scheme}://...")
    return "postgresql+psycopg://" + pg_url.split("://", 1)[1]


def ensure_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` unless it exists; returns its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise StackError(f"unsafe database name {name!r}")
    with connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


@dataclass(frozen=True)
class AirflowSetup:
    """Everything that makes Airflow's processes agree with each other."""

    home: Path
    sql_alchemy_conn: str
    api_port: int
    jwt_secret: str
    secret_key: str
    fernet_key: str
    log_server_port: int = 8793
    triggerer_log_server_port: int = 8794
    dags_folder: Path = REPO / "dags"
    executor: str = "LocalExecutor"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def env(
        self, extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Every Airflow process's environment: the repo's airflow.cfg + this machine's values."""
        env = dict(os.environ if base is None else base)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
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
        )
        env.update(extra or {})
        return env


def airflow_command(*args: str) -> list[str]:
    """`airflow ARGS` with this interpreter (the project's virtual environment)."""
    return [sys.executable, "-m", "airflow", *args]


def component_argv(component: str, setup: AirflowSetup) -> list[str]:
    if component == "api-server":
        return airflow_command("api-server", "--host", "127.0.0.1", "--port", str(setup.api_port))
    if component not in AIRFLOW_COMPONENTS:
        raise StackError(f"unknown Airflow component {component!r}")
    return airflow_command(component)


def run_airflow(
    args: Sequence[str], env: Mapping[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an `airflow` CLI command to completion; raises StackError with its output tail."""
    result = subprocess.run(
        airflow_command(*args),
        env=dict(env),
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise StackError(
            f"airflow {' '.join(args)} exited {result.returncode}:\n" + "\n".join(output[-30:])
        )
    return result


def airflow_health(api_url: str) -> dict[str, object]:
    response = httpx.get(f"{api_url}/api/v2/monitor/health", timeout=5)
    response.raise_for_status()
    return dict(response.json())


def healthy(health: Mapping[str, object], components: Iterable[str]) -> bool:
    """True when the health report says every named component is healthy."""
    keys = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
    for component in components:
        key = keys.get(component)
        if key is None:
            continue
        status = health.get(key)
        if not isinstance(status, dict) or status.get("status") != "healthy":
            return False
    return True


def start_airflow(
    group: ProcessGroup,
    setup: AirflowSetup,
    env: Mapping[str, str],
    components: Sequence[str] = AIRFLOW_COMPONENTS,
    timeout: float = 180,
    cwd: Path | None = None,
) -> list[ProcessHandle]:
    """Start the components (the api-server first) and wait until the health check is green."""
    handles = []
    for component in components:
        handle = group.handle(f"airflow-{component}")
        if handle is None:
            if component == "api-server" and not port_free(setup.api_port):
                raise StackError(f"port {setup.api_port} is taken; choose another with --port")
            handle = group.start(f"airflow-{component}", component_argv(component, setup), env, cwd)
        handles.append(handle)
    wait_until(
        lambda: healthy(airflow_health(setup.api_url), components),
        f"Airflow ({', '.join(components)}) to report healthy at {setup.api_url}",
        timeout,
        handles,
    )
    return handles


def admin_password(setup: AirflowSetup) -> str | None:
    """The simple auth manager's generated password for `admin` (written at api-server start)."""
    if not setup.passwords_file.exists():
        return None
    passwords = json.loads(setup.passwords_file.read_text() or "{}")
    value = passwords.get(ADMIN_USER)
    return str(value) if value else None


# -- S3 --------------------------------------------------------------------------------------


def lake_bucket(lake_uri: str) -> str | None:
    parts = urlsplit(lake_uri)
    return parts.netloc if parts.scheme in ("s3", "s3a") else None


def create_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


# -- the stack -------------------------------------------------------------------------------


class Stack:
    """`up`, `down` and `status` over the state kept in `.local/stack/`."""

    def __init__(self, settings: Settings, run_dir: Path = STACK_DIR) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.group = ProcessGroup(run_dir)
        self.state_file = run_dir / "state.json"

    def _state(self) -> dict[str, object]:
        if self.state_file.exists():
            return dict(json.loads(self.state_file.read_text()))
        return {}

    def _save(self, state: Mapping[str, object]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _secrets(self) -> dict[str, str]:
        path = self.run_dir / "airflow" / "secrets.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        from cryptography.fernet import Fernet

        values = {
            "jwt_secret": secrets.token_urlsafe(32),
            "secret_key": secrets.token_urlsafe(32),
            "fernet_key": Fernet.generate_key().decode(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values) + "\n")
        return values

    def up(self, *, port: int, rate: int, lake: str, feed: bool) -> dict[str, object]:
        state = self._state()
        self.run_dir.mkdir(parents=True, exist_ok=True)

        # PostgreSQL: raw trades, the warehouse schema and Airflow's metadata.
        server = LocalPostgres(self.settings.local_pg_dir)
        if self.settings.database_url:
            raw_url = self.settings.database_url
            server_url = with_database(raw_url, "postgres")
        else:
            was_running = server.status() is not None
            server_url = raw_url = server.ensure_running()
            state.setdefault("started_postgres", not was_running)
        from binance_etl.schema import migrate

        with connect(raw_url, autocommit=True) as conn:
            migrate(conn, ahead_days=self.settings.partitions_ahead_days)
        metadata_url = ensure_database(server_url, "airflow")
        state["database_url"] = raw_url

        # The S3-compatible server and the lake's bucket.
        project_env: dict[str, str] = {"DATABASE_URL": raw_url}
        if lake == "s3":
            s3 = self.group.handle("s3")
            if s3 is not None:
                s3_port = int(str(state["s3_port"]))
            else:
                s3_port = free_port()
                s3 = self.group.start(
                    "s3",
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                    os.environ,
                )
            endpoint = f"http://127.0.0.1:{s3_port}"
            wait_until(lambda: httpx.get(endpoint, timeout=3).status_code < 500, "the S3 server",
                       60, [s3])
            lake_uri = self.settings.lake_uri if lake_bucket(self.settings.lake_uri) else (
                f"s3://{DEFAULT_BUCKET}/lake"
            )
            bucket = lake_bucket(lake_uri)
            assert bucket is not None
            create_bucket(endpoint, bucket)
            state.update({"s3_port": s3_port, "s3_url": endpoint, "lake_uri": lake_uri})
            project_env.update(S3_TEST_CREDENTIALS)
            project_env.update({"LAKE_URI": lake_uri, "S3_ENDPOINT_URL": endpoint})
        else:
            lake_uri = str(Path(self.settings.lake_uri).resolve()) if "://" not in (
                self.settings.lake_uri
            ) else self.settings.lake_uri
            project_env["LAKE_URI"] = lake_uri
            state["lake_uri"] = lake_uri

        # Airflow.
        if self.group.handle("airflow-api-server") is None:
            state["api_port"] = port
        state.setdefault("log_server_port", free_port())
        state.setdefault("triggerer_log_server_port", free_port())
        state.update({"metadata_url": metadata_url, "project_env": project_env})
        setup, env = self.airflow(state)
        if not any(self.group.handle(f"airflow-{c}") for c in AIRFLOW_COMPONENTS):
            logger.info("preparing Airflow's metadata database (airflow db migrate)")
            run_airflow(["db", "migrate"], env)
        state["airflow_url"] = setup.api_url
        self._save(state)
        start_airflow(self.group, setup, env)
        state["airflow_password"] = admin_password(setup)

        # The replay feed and the streamer pointed at it.
        if feed:
            feed_urls = self._start_feed(rate, state)
            stream_env = dict(os.environ, **project_env)
            stream_env.update({"BINANCE_WS_URL": feed_urls["ws"],
                               "BINANCE_REST_URL": feed_urls["rest"]})
            if self.group.handle("streamer") is None:
                self.group.start("streamer", [sys.executable, "stream.py"], stream_env)
        self._save(state)
        return state

    def airflow(
        self, state: Mapping[str, object] | None = None
    ) -> tuple[AirflowSetup, dict[str, str]]:
        """The stack's Airflow set-up and the environment its processes (and CLI) run with."""
        state = self._state() if state is None else state
        if "metadata_url" not in state:
            raise StackError("the stack is not up: run `python -m scripts.stack up` first")
        keys = self._secrets()
        project_env = state.get("project_env")
        assert isinstance(project_env, dict)
        setup = AirflowSetup(
            home=self.run_dir / "airflow",
            sql_alchemy_conn=sqlalchemy_url(str(state["metadata_url"])),
            api_port=int(str(state["api_port"])),
            jwt_secret=keys["jwt_secret"],
            secret_key=keys["secret_key"],
            fernet_key=keys["fernet_key"],
            log_server_port=int(str(state["log_server_port"])),
            triggerer_log_server_port=int(str(state["triggerer_log_server_port"])),
        )
        return setup, setup.env({str(k): str(v) for k, v in project_env.items()})

    def _start_feed(self, rate: int, state: dict[str, object]) -> dict[str, str]:
        handle = self.group.handle("replay")
        if handle is None or not isinstance(state.get("feed"), dict):
            if handle is not None:
                self.group.stop("replay")
            handle = self.group.start(
                "replay",
                [sys.executable, "-m", "binance_etl.replay",
                 "--symbols", ",".join(self.settings.symbols), "--rate", str(rate)],
                os.environ,
            )
            urls = wait_until(lambda: feed_urls_from_log(handle.log), "the replay feed's URLs",
                              60, [handle])
            state["feed"] = urls
        feed = state["feed"]
        assert isinstance(feed, dict)
        return {"ws": str(feed["ws"]), "rest": str(feed["rest"])}

    def down(self) -> list[str]:
        stopped = []
        # Producers first, so the streamer flushes into a database that is still there.
        order = ["streamer", "replay", *(f"airflow-{c}" for c in AIRFLOW_COMPONENTS), "s3"]
        for name in order + [n for n in self.group.names() if n not in order]:
            if self.group.stop(name, timeout=60 if name == "streamer" else 30):
                stopped.append(name)
        state = self._state()
        if state.get("started_postgres"):
            if LocalPostgres(self.settings.local_pg_dir).stop():
                stopped.append("postgres")
        self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[tuple[str, str, str]]:
        """(name, 'running pid N' | 'stopped', URL or log) for each part of the stack."""
        state = self._state()
        rows = []
        pg = LocalPostgres(self.settings.local_pg_dir).status()
        where = str(state.get("database_url") or pg or "")
        rows.append(("postgres", "running" if pg else "stopped", where))
        feed = state.get("feed")
        urls = {
            "s3": str(state.get("s3_url", "")),
            "airflow-api-server": str(state.get("airflow_url", "")),
            "replay": str(feed.get("ws", "")) if isinstance(feed, dict) else "",
        }
        for name in ["s3", *(f"airflow-{c}" for c in AIRFLOW_COMPONENTS), "replay", "streamer"]:
            handle = self.group.handle(name)
            where = urls.get(name) or str(self.group.log_dir / f"{name}.log")
            rows.append((name, f"running pid {handle.pid}" if handle else "stopped", where))
        return rows


_FEED_LINE_RE = re.compile(r"BINANCE_WS_URL=(\S+) BINANCE_REST_URL=(\S+)")


def feed_urls_from_log(log: Path) -> dict[str, str] | None:
    """The URLs the replay feed prints once it listens: `BINANCE_WS_URL=.. BINANCE_REST_URL=..`."""
    if not log.exists():
        return None
    matches = _FEED_LINE_RE.findall(log.read_text(errors="replace"))
    if not matches:
        return None
    ws, rest = matches[-1]  # the latest start's
    return {"ws": ws, "rest": rest}


def screenshot(
    api_url: str, password: str, path: str, out: Path, *, width: int = 1600, height: int = 1000,
    settle_seconds: float = 6.0, browser: str = "chromium",
) -> Path:
    """A PNG of an Airflow UI page, logged in as admin: headless Chromium driven over the
    DevTools protocol (Debian's `chromium`; Playwright's browser download is not needed)."""
    import shutil
    import tempfile

    from websockets.sync.client import connect as ws_connect

    executable = shutil.which(browser)
    if executable is None:
        raise StackError(f"{browser} is not installed (apt-get install -y chromium)")
    token = httpx.post(f"{api_url}/auth/token", json={"username": ADMIN_USER, "password": password},
                       timeout=30)
    token.raise_for_status()
    jwt = str(token.json()["access_token"])
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="stack-chromium-") as profile:
        process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            targets = wait_until(
                lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=3).json()
                         if t.get("type") == "page"],
                "headless Chromium", 60,
            )
            with ws_connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                counter = 0

                def call(method: str, **params: object) -> dict[str, object]:
                    nonlocal counter
                    counter += 1
                    ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                    while True:
                        message = json.loads(ws.recv(timeout=60))
                        if message.get("id") == counter:
                            if "error" in message:
                                raise StackError(f"{method}: {message['error']}")
                            return dict(message.get("result", {}))

                call("Network.enable")
                call("Network.setCookie", name="_token", value=jwt, url=api_url, path="/")
                call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                     deviceScaleFactor=1, mobile=False)
                call("Page.enable")
                call("Page.navigate", url=f"{api_url}{path}")
                time.sleep(settle_seconds)  # the single-page app fetches and renders
                shot = call("Page.captureScreenshot", format="png")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    import base64

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(str(shot["data"])))
    return out


def _print_summary(state: Mapping[str, object], stack: Stack) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="binance-etl stack")
    for column in ("part", "state", "where"):
        table.add_column(column)
    for row in stack.status():
        table.add_row(*row)
    console = Console(width=max(120, Console().width))
    console.print(table)
    if state.get("airflow_url"):
        password = state.get("airflow_password") or "(see the api-server log)"
        console.print(
            f"Airflow UI: {state['airflow_url']}  user [bold]{ADMIN_USER}[/]  password "
            f"[bold]{password}[/] (from {stack.run_dir / 'airflow'}/"
            "simple_auth_manager_passwords.json.generated)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.stack", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or keep) every part of the stack")
    up.add_argument("--port", type=int, default=8080, help="Airflow UI/API port (default 8080)")
    up.add_argument("--rate", type=int, default=50, help="replay feed: trades per second")
    up.add_argument("--lake", choices=["s3", "local"], default="s3",
                    help="s3: the lake on the local S3 server (like compose); local: LAKE_URI path")
    up.add_argument("--no-feed", dest="feed", action="store_false",
                    help="no replay feed and no streamer")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="list what runs, with URLs")
    cli = sub.add_parser("airflow", help="run an `airflow` CLI command against the stack",
                         description="e.g. python -m scripts.stack airflow dags list-runs "
                         "daily_binance_etl")
    cli.add_argument("args", nargs=argparse.REMAINDER)
    shot = sub.add_parser("screenshot", help="PNG of a page of the stack's Airflow UI")
    shot.add_argument("--path", default="/dags/daily_binance_etl", help="UI path to open")
    shot.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "airflow-run.png")
    shot.add_argument("--wait", type=float, default=6.0, help="seconds to let the page render")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(error.code, file=sys.stderr)
        return 2
    stack = Stack(settings)
    try:
        if args.command == "up":
            state = stack.up(port=args.port, rate=args.rate, lake=args.lake, feed=args.feed)
            _print_summary(state, stack)
        elif args.command == "airflow":
            _, env = stack.airflow()
            return subprocess.run(airflow_command(*args.args), env=env, check=False).returncode
        elif args.command == "screenshot":
            state = stack._state()
            if not state.get("airflow_url") or not state.get("airflow_password"):
                raise StackError("the stack is not up: run `python -m scripts.stack up` first")
            out = screenshot(str(state["airflow_url"]), str(state["airflow_password"]),
                             args.path, args.out, settle_seconds=args.wait)
            print(f"wrote {out}")
        elif args.command == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        else:
            _print_summary(stack._state(), stack)
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
