"""Shared fixtures. Integration fixtures start real services; unit tests need none."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from binance_etl.db import connect, with_database
from binance_etl.localpg import LocalPostgres
from binance_etl.schema import migrate

# No test reaches the real exchange, even on a machine that could: the batch's exchange check
# would compare generated days with Binance's real klines. Closed local ports fail at once (the
# check then says "skipped"); tests that want klines point these at the replay feed.
os.environ.setdefault("BINANCE_DATA_URL", "http://127.0.0.1:9")
os.environ.setdefault("BINANCE_REST_URL", "http://127.0.0.1:9")

# Each area keeps its fixtures in its own plugin module.
pytest_plugins = [
    "tests.plugins.replay",
    "tests.plugins.ingest",
    "tests.plugins.spark",
    "tests.plugins.s3",
    "tests.plugins.redshift_data",
    "tests.plugins.airflow",
    "tests.plugins.backfill",
    "tests.plugins.deploy",
    "tests.plugins.dashboard",
    "tests.plugins.live",
]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A running PostgreSQL server: DATABASE_URL's when set, else the project's own local one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return LocalPostgres(os.environ.get("LOCAL_PG_DIR", ".local/postgres")).ensure_running()


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    with connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session database, with `trades` emptied first."""
    with connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE trades")
        yield conn
