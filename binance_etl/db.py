"""Connections to the raw trades store: `DATABASE_URL`, or the project's own local server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from binance_etl.localpg import LocalPostgres
from binance_etl.settings import Settings


def resolve_database_url(settings: Settings) -> str:
    """The raw store's URL; starts (or reuses) the local server when DATABASE_URL is unset."""
    if settings.database_url:
        return settings.database_url
    return LocalPostgres(settings.local_pg_dir).ensure_running()


def resolve_warehouse_url(settings: Settings) -> str:
    """The warehouse's URL; by default the raw store's server (tables in schema `warehouse`)."""
    return settings.warehouse_url or resolve_database_url(settings)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new migrated database `<prefix>_<random>` on `server_url`'s server (tests, benchmarks),
    dropped afterwards; yields its URL."""
    from binance_etl.schema import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        with connect(url, autocommit=True) as conn:
            migrate(conn)
        yield url
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def connect(url: str, *, autocommit: bool = False, timeout: int = 10) -> psycopg.Connection:
    """A psycopg connection in UTC. Accepts postgres:// and postgresql:// URLs."""
    conn = psycopg.connect(
        url.replace("postgres://", "postgresql://", 1),
        autocommit=autocommit,
        connect_timeout=timeout,
        options="-c timezone=UTC",
    )
    return conn


def redact(url: str) -> str:
    """The URL without its password, for logs and error lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
