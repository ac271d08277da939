"""Pytest fixtures for the backfill area (registered in tests/conftest.py).

`dump_server` serves a folder of generated daily dumps (`binance_etl/replay/dumps.py` layout:
`<dir>/<SYMBOL>/<file>`) at Binance's path `/data/spot/daily/trades/<SYMBOL>/<file>` from a real
HTTP server on 127.0.0.1, in a thread stopped at the end of the test. It records every path asked
for, and can cut the connection mid-body for the next N requests of a file.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.httpserver import serving

PREFIX = "/data/spot/daily/trades/"


@dataclass
class DumpServer:
    url: str
    dumps_dir: Path
    requests: list[str] = field(default_factory=list)
    drop_next: dict[str, int] = field(default_factory=dict)  # file name -> connections to cut
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requested(self, suffix: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if path.endswith(suffix))


def _handler(server_state: DumpServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with server_state.lock:
                server_state.requests.append(self.path)
            relative = self.path.removeprefix(PREFIX) if self.path.startswith(PREFIX) else None
            parts = relative.split("/") if relative else []
            target = server_state.dumps_dir.joinpath(*parts) if len(parts) == 2 else None
            if target is None or ".." in parts or not target.is_file():
                body = b"<Error><Code>NoSuchKey</Code></Error>"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = target.read_bytes()
            with server_state.lock:
                cut = server_state.drop_next.get(target.name, 0)
                if cut:
                    server_state.drop_next[target.name] = cut - 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/zip")
            self.end_headers()
            if cut:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

    return Handler


@pytest.fixture
def dump_server(tmp_path: Path) -> Iterator[DumpServer]:
    dumps_dir = tmp_path / "dumps"
    dumps_dir.mkdir()
    state = DumpServer(url="", dumps_dir=dumps_dir)
    with serving(_handler(state), "dump-server") as url:
        state.url = url
        yield state


@pytest.fixture
def backfill_conn(pg_conn: psycopg.Connection) -> psycopg.Connection:
    """`pg_conn` (trades emptied) with `backfill_log` created and emptied too."""
    from etl.backfill_load import ensure_backfill_log

    ensure_backfill_log(pg_conn)
    pg_conn.execute("TRUNCATE backfill_log")
    return pg_conn
