"""Pytest fixtures for the spark area (registered in tests/conftest.py).

`spark`: ONE local[2] SparkSession for the whole test session (UI off, few shuffle partitions),
built by the job's own `etl.spark.build_session`, so the job reuses it as the active session.
`spark_standalone`: a real standalone master + worker started with `spark-class` (pip's pyspark
ships no sbin scripts) on 127.0.0.1, bounded in time and stopped afterwards.
`spark_connect_server`: ONE real Spark Connect server (`etl.connect_server`, local[2], a free
port of 127.0.0.1) for the whole test session, which a test may crash and start again on the
same port (`ConnectServer.kill`, `.start`); `spark_connect`: its URL, what SPARK_REMOTE holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from binance_etl.localpg import free_port


@dataclass(frozen=True)
class StandaloneCluster:
    url: str  # spark://127.0.0.1:PORT
    work_dir: Path  # the worker's folder: one app-*/ per application it ran executors for


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from etl.spark import build_session

    session = build_session("local[2]", shuffle_partitions=2, app_name="binance-etl-tests")
    yield session
    session.stop()


@dataclass
class ConnectServer:
    """The session's Spark Connect server: its URL stays the same across `kill` + `start`."""

    directory: Path
    port: int = 0
    url: str = ""
    pid: int = 0

    def start(self) -> None:
        from binance_etl.settings import load_settings
        from etl import connect_server

        state = connect_server.start(load_settings(spark_master="local[2]"),
                                     directory=self.directory, port=self.port)
        self.port, self.url, self.pid = state.port, state.url, state.pid

    def kill(self) -> None:
        """SIGKILL the server's JVM and its Python workers at once (a crash of its host or
        container: its queries die with it) and wait for their end. (A worker left behind by
        its JVM alone can hang for good in gRPC's channel close at exit: pyspark 4.3.)"""
        server = psutil.Process(self.pid)
        processes = [server, *server.children(recursive=True)]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        _gone, alive = psutil.wait_procs(processes, timeout=30)
        assert not alive, f"still running after SIGKILL: {alive}"

    def stop(self) -> None:
        from etl import connect_server

        connect_server.stop(self.directory)


@pytest.fixture(scope="session")
def spark_connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    """A running Spark Connect server (local[2]); stopped at the end of the session."""
    server = ConnectServer(tmp_path_factory.mktemp("spark-connect"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark_connect(spark_connect_server: ConnectServer) -> str:
    """The URL (sc://127.0.0.1:PORT) of the session's running Spark Connect server."""
    return spark_connect_server.url


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.name} exited early:\n{log.read_text()[-2000:]}")
        if log.exists() and re.search(pattern, log.read_text()):
            return
        time.sleep(0.25)
    raise TimeoutError(f"no {pattern!r} in {log} after {timeout}s:\n{log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def spark_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """A running standalone master with one worker (2 cores, 1.5 GiB) on 127.0.0.1."""
    home = spark_home()
    logs = tmp_path_factory.mktemp("spark-standalone")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(logs),
        "SPARK_WORKER_DIR": str(logs / "work"),
        "SPARK_NO_DAEMONIZE": "1",
    }
    port = free_port()
    class_ = str(home / "bin" / "spark-class")
    master_log = logs / "master.log"
    master = subprocess.Popen(
        [class_, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(free_port())],
        env=env, stdout=master_log.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"spark://127.0.0.1:{port}"
    worker: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(master_log, r"I have been elected leader|Starting Spark master", master, 60)
        worker_log = logs / "worker.log"
        worker = subprocess.Popen(
            [class_, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
             "--cores", "2", "--memory", "1536m", "--webui-port", str(free_port()),
             "--work-dir", str(logs / "work")],
            env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
        )
        _wait_for(worker_log, r"Successfully registered with master", worker, 60)
        yield StandaloneCluster(url, logs / "work")
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)
