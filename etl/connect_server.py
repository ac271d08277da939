"""`python -m etl.connect_server start|run|stop|status|url` — the project's Spark Connect server.

The batch's clients (SPARK_REMOTE=sc://host:port) start no JVM; this server holds one, started
from the pyspark wheel's own `sbin/start-connect-server.sh` with everything the clients rely
on: the PostgreSQL JDBC driver (`spark.jars.packages`; with an `s3://` LIVE_CHECKPOINT_URI
also hadoop-aws and the s3a settings of `etl.s3a`: the live query's checkpoint is written
here), the batch's SQL settings (UTC, ANSI, exact decimal products: `etl.spark.SQL_CONF`), the
driver's JVM options (and the class-data archive of `etl.jvmcache` when there is one),
`PYSPARK_PYTHON` = this interpreter (Python data sources and UDFs run the project's code with
its packages), and SPARK_MASTER as where it runs (local, or a standalone cluster). It binds to
127.0.0.1 unless told otherwise.

    start   in the background (spark-daemon.sh); waits until it accepts connections and prints
            its URL; `--port 0` picks a free port; logs and pid in `--dir` (.local/spark-connect).
    run     in the foreground (docker compose, honcho): the same server, replacing this process.
    stop    SIGTERM to the recorded server, then waits for it to exit.
    status  one line; exit 0 when it answers, 1 otherwise.
    url     prints sc://host:port of the running server (for `export SPARK_REMOTE=$(...)`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from binance_etl.localpg import free_port
from binance_etl.settings import Settings, SettingsError, load_settings
from etl.s3a import hadoop_conf, is_s3, jars_packages
from etl.spark import (
    LOOPBACK_MASTERS,
    POSTGRES_JDBC_PACKAGE,
    SQL_CONF,
    STATUS_RETENTION,
    driver_java_options,
)

logger = logging.getLogger(__name__)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
IDENT = "binance-etl"  # spark-daemon.sh names the pid and log files after it
DEFAULT_DIR = Path(".local/spark-connect")
DEFAULT_PORT = 15002
START_TIMEOUT_SECONDS = 240.0  # a loaded 2-core machine; the first start also fetches the driver
STOP_TIMEOUT_SECONDS = 30.0
# The environment of the client must not leak into the server (it would try to be a client).
CLIENT_VARIABLES = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE",
                    "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")


class ConnectServerError(RuntimeError):
    """The server could not be started or stopped; the message says why in one line."""


@dataclass(frozen=True)
class ServerState:
    url: str  # sc://host:port, what clients put in SPARK_REMOTE
    host: str
    port: int
    pid: int
    master: str
    log: str


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def server_conf(settings: Settings, host: str, port: int, *,
                driver_memory: str = "1g") -> dict[str, str]:
    """Every `--conf` of the server: what the in-process session of `etl.spark` sets, plus
    the gRPC binding. SQL settings are defaults of each client session (the client applies
    them again: a server started by hand gets them too)."""
    python = sys.executable
    conf = {
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.jars.packages": POSTGRES_JDBC_PACKAGE,
        "spark.driver.memory": driver_memory,
        "spark.driver.extraJavaOptions": driver_java_options(),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.adaptive.enabled": "true",
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        **SQL_CONF,
        **STATUS_RETENTION,  # a long-running service: the live query's micro-batches
    }
    if settings.spark_master.startswith("spark://"):
        conf.update({"spark.executor.memory": "1g", "spark.cores.max": "2"})
    if is_s3(settings.live_checkpoint_uri):
        # the live query's checkpoint is written by this server: s3a with the server's own
        # environment's credentials (inherited, never put on the command line)
        conf["spark.jars.packages"] = jars_packages(POSTGRES_JDBC_PACKAGE)
        conf.update(hadoop_conf(settings))
    return conf


def server_args(settings: Settings, host: str, port: int) -> list[str]:
    """The master and every setting, as spark-submit arguments."""
    args = ["--master", settings.spark_master]
    for key, value in server_conf(settings, host, port).items():
        args += ["--conf", f"{key}={value}"]
    return args


def server_env(directory: Path, settings: Settings, host: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_PID_DIR": str(directory),
        "SPARK_LOG_DIR": str(directory / "logs"),
        "SPARK_IDENT_STRING": IDENT,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    })
    master = settings.spark_master
    if host in ("127.0.0.1", "localhost") and (
        master.startswith("local") or master.startswith(LOOPBACK_MASTERS)
    ):
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return env


def pid_file(directory: Path) -> Path:
    return directory / f"spark-{IDENT}-{SERVER_CLASS}-1.pid"


def log_file(directory: Path) -> Path:
    return directory / "logs" / f"spark-{IDENT}-{SERVER_CLASS}-1-{socket.gethostname()}.out"


def state_file(directory: Path) -> Path:
    return directory / "server.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: make sure the pid was not reused by another program
        try:
            return SERVER_CLASS.encode() in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _listening(host: str, port: int) -> bool:
    probe = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        socket.create_connection((probe, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _recorded_pid(directory: Path) -> int | None:
    try:
        return int(pid_file(directory).read_text().strip())
    except (OSError, ValueError):
        return None


def read_state(directory: Path = DEFAULT_DIR) -> ServerState | None:
    """The recorded server, if its process is still alive (it may not answer yet)."""
    try:
        state = ServerState(**json.loads(state_file(directory).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def _url(host: str, port: int) -> str:
    return f"sc://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def _record(directory: Path, state: ServerState) -> None:
    state_file(directory).write_text(json.dumps(state.__dict__))


def _log_tail(directory: Path, lines: int = 3) -> str:
    try:
        text = log_file(directory).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in text if "ERROR" in line or "Exception" in line]
    return " | ".join((errors or text)[-lines:]) or "empty log"


def start(settings: Settings | None = None, *, directory: Path = DEFAULT_DIR,
          host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          timeout: float = START_TIMEOUT_SECONDS) -> ServerState:
    """Start the server in the background (or return the running one) and wait until it
    accepts connections."""
    settings = settings or load_settings()
    directory = directory.resolve()
    running = read_state(directory)
    if running is not None:
        logger.info("spark connect server already running at %s (pid %d)", running.url,
                    running.pid)
        return running
    stale = _recorded_pid(directory)
    if stale is not None and not _alive(stale):
        pid_file(directory).unlink(missing_ok=True)  # spark-daemon.sh refuses a live-looking one
    port = port or free_port()
    if _listening(host, port):
        raise ConnectServerError(f"port {port} on {host} is already taken; choose --port")
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    command = [str(spark_home() / "sbin" / "start-connect-server.sh"),
               *server_args(settings, host, port)]
    result = subprocess.run(command, env=server_env(directory, settings, host),
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConnectServerError(f"start-connect-server.sh exited with {result.returncode}: "
                                 f"{last[0]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _recorded_pid(directory)
        if pid is not None and not _alive(pid):
            raise ConnectServerError(f"the server exited during start-up: {_log_tail(directory)}"
                                     f" (log {log_file(directory)})")
        if pid is not None and _listening(host, port):
            state = ServerState(url=_url(host, port), host=host, port=port, pid=pid,
                                master=settings.spark_master, log=str(log_file(directory)))
            _record(directory, state)
            logger.info("spark connect server at %s (pid %d, master %s)", state.url, pid,
                        settings.spark_master)
            return state
        time.sleep(0.25)
    stop(directory)
    raise ConnectServerError(f"the server did not accept connections within {timeout:.0f} s: "
                             f"{_log_tail(directory)} (log {log_file(directory)})")


def stop(directory: Path = DEFAULT_DIR, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """Stop the recorded server; True if one was running. SIGKILL after `timeout`."""
    directory = directory.resolve()
    pid = _recorded_pid(directory)
    stopped = False
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            logger.warning("spark connect server pid %d ignored SIGTERM; killing it", pid)
            os.kill(pid, signal.SIGKILL)
        stopped = True
    pid_file(directory).unlink(missing_ok=True)
    state_file(directory).unlink(missing_ok=True)
    return stopped


def run_foreground(settings: Settings, host: str, port: int, directory: Path) -> None:
    """Replace this process with the server (for docker compose and Procfile runners)."""
    directory = directory.resolve()
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = server_env(directory, settings, host)
    # exec keeps this pid down to the JVM (spark-submit and spark-class exec too), so status,
    # url and stop work on a foreground server as well.
    _record(directory, ServerState(url=_url(host, port), host=host, port=port, pid=os.getpid(),
                                   master=settings.spark_master, log="stdout"))
    pid_file(directory).write_text(f"{os.getpid()}\n")
    # What start-connect-server.sh runs, without spark-daemon.sh: a foreground service logs
    # to its own stdout, and its process manager (docker, honcho) stops it with a signal.
    os.execve(str(spark_home() / "bin" / "spark-submit"),
              ["spark-submit", "--class", SERVER_CLASS, "--name", "Spark Connect server",
               *server_args(settings, host, port)], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.connect_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "run", "stop", "status", "url"))
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: a free port")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="pid, state and logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command in ("start", "run"):
            settings = load_settings()
            if args.command == "run":
                run_foreground(settings, args.host, args.port, args.dir)
            started = start(settings, directory=args.dir, host=args.host, port=args.port)
            print(started.url)
            return 0
        if args.command == "stop":
            print("stopped" if stop(args.dir) else "no spark connect server was running")
            return 0
        state = read_state(args.dir.resolve())
        answers = state is not None and _listening(state.host, state.port)
        if args.command == "url":
            if state is None or not answers:
                print("error: no spark connect server is running (python -m etl.connect_server "
                      "start)", file=sys.stderr)
                return 1
            print(state.url)
            return 0
        if state is None:
            print("spark connect server: not running")
            return 1
        print(f"spark connect server: {state.url} pid {state.pid} master {state.master} "
              f"{'answers' if answers else 'does not answer yet'} (log {state.log})")
        return 0 if answers else 1
    except SettingsError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    except ConnectServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
