"""Pytest fixtures for the airflow area (registered in tests/conftest.py).

`airflow_home`: one AIRFLOW_HOME for the test session. `airflow_sqlite_env`: the environment of
Airflow's CLI with a migrated SQLite metadata database there (for `airflow dags test`, which needs
no other process). `airflow_services`: a real api-server, scheduler and dag-processor
(LocalExecutor, metadata in a database `airflow_test_<hex>` on the project's PostgreSQL) on free
ports of 127.0.0.1, started from the repository's Procfile by honcho exactly as `make stack` does
(scripts/stack.py), bounded in time and stopped (and the database dropped) at the end of the
session.

Helpers: `insert_day` writes generated, Binance-shaped raw trades for a UTC day;
`expected_facts` / `warehouse_facts` / `lake_partitions` read what a run should and did produce.
"""

from __future__ import annotations

import os
import random
import secrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from binance_etl.db import connect
from binance_etl.localpg import free_port
from binance_etl.schema import ensure_partitions
from scripts.stack import (
    AirflowSetup,
    airflow_health,
    ensure_database,
    healthy,
    procfile_env,
    run_airflow,
    sqlalchemy_url,
    start_honcho,
    stop_honcho,
    wait_until,
    write_env_file,
)

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
# Settings the runs must not inherit from a developer's shell or `.env`.
_PROJECT_VARIABLES = (
    "DATABASE_URL", "WAREHOUSE_URL", "LAKE_URI", "S3_ENDPOINT_URL", "SYMBOLS", "SPARK_MASTER",
    "SPARK_REMOTE",
    "REDSHIFT_IAM_ROLE", "AIRFLOW_START_DATE", "AIRFLOW_WAIT_FOR_RAW_DAY", "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
)


def project_env(database_url: str, lake: Path, **extra: str) -> dict[str, str]:
    """The project's settings for the ETL tasks: the test database, a tmp lake, local Spark."""
    env = {k: v for k, v in os.environ.items() if k not in _PROJECT_VARIABLES}
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "LAKE_URI": str(lake),
            "SYMBOLS": ",".join(SYMBOLS),
            "SPARK_MASTER": "local[2]",
            "AIRFLOW_START_DATE": "2025-01-01",
            "AIRFLOW_RAW_DAY_POKE_SECONDS": "5",
            "AIRFLOW_RAW_DAY_TIMEOUT_MINUTES": "2",
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
    )
    env.update(extra)
    return env


def _setup(home: Path, sql_alchemy_conn: str) -> AirflowSetup:
    return AirflowSetup(
        home=home,
        sql_alchemy_conn=sql_alchemy_conn,
        api_port=free_port(),
        jwt_secret=secrets.token_urlsafe(32),
        secret_key=secrets.token_urlsafe(32),
        fernet_key="",
        log_server_port=free_port(),
        triggerer_log_server_port=free_port(),
    )


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow-home")


@dataclass(frozen=True)
class AirflowCli:
    """Airflow's CLI environment over one metadata database; `run` raises with the output."""

    setup: AirflowSetup
    env: dict[str, str]
    lake: Path

    def run(self, *args: str, timeout: float = 300) -> str:
        result = run_airflow(list(args), self.env, cwd=self.setup.home, timeout=timeout)
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
def airflow_sqlite_env(airflow_home: Path, pg_url: str) -> AirflowCli:
    """`airflow` CLI with SQLite metadata in the session's AIRFLOW_HOME (migrated)."""
    database = airflow_home / "airflow.db"
    setup = _setup(airflow_home, f"sqlite:///{database}")
    lake = airflow_home / "lake-dags-test"
    env = {**project_env(pg_url, lake), **setup.env()}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC")  # Airflow derives aiosqlite's itself
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    cli = AirflowCli(setup, env, lake)
    cli.run("db", "migrate", timeout=180)
    return cli


@dataclass(frozen=True)
class AirflowServices:
    cli: AirflowCli
    metadata_url: str  # libpq form, for reading dag_run / backfill directly

    @property
    def api_url(self) -> str:
        return self.cli.setup.api_url


@pytest.fixture(scope="session")
def airflow_services(
    airflow_home: Path, pg_server_url: str, pg_url: str
) -> Iterator[AirflowServices]:
    """api-server + scheduler + dag-processor on PostgreSQL metadata; stopped afterwards."""
    name = f"airflow_test_{uuid.uuid4().hex[:10]}"
    metadata_url = ensure_database(pg_server_url, name)
    home = airflow_home / "services"
    home.mkdir()
    setup = _setup(home, sqlalchemy_url(metadata_url))
    lake = home / "lake"
    stack_env = {**procfile_env(), **setup.env()}
    # The scheduler must not create today's scheduled run on its own (catchup is off, but the
    # latest slot always runs): the tests drive backfills and manual runs only.
    stack_env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    env = {**project_env(pg_url, lake), **stack_env}
    cli = AirflowCli(setup, env, lake)
    # What `make stack` runs (the Procfile's lines, by honcho, with an env file), in AIRFLOW_HOME
    # as working directory: no `.env` of the checkout reaches the tasks.
    env_file = home / "stack.env"
    write_env_file(env_file, stack_env)
    processes = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
    honcho = None
    try:
        cli.run("db", "migrate", timeout=180)
        honcho = start_honcho(env_file, processes, home / "honcho.log", cwd=home,
                              env=project_env(pg_url, lake))
        running = honcho
        wait_until(lambda: healthy(airflow_health(setup.api_url), processes),
                   "Airflow to report healthy", 180, alive=lambda: running.poll() is None,
                   log=home / "honcho.log")
        yield AirflowServices(cli, metadata_url)
    finally:
        if honcho is not None:
            stop_honcho(honcho.pid)
        with connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- data ------------------------------------------------------------------------------------


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def insert_day(
    conn: psycopg.Connection,
    day: date,
    *,
    per_symbol: int = 400,
    seed: int = 7,
    symbols: Sequence[str] = SYMBOLS,
    first_ids: dict[str, int] | None = None,
) -> dict[str, int]:
    """Generated trades spread over the UTC day, consecutive ids per symbol; returns next ids.

    Prices and quantities have 8 decimals (exact `numeric`); a few trades share a millisecond.
    """
    rng = random.Random(f"{seed}-{day}")
    ensure_partitions(conn, [day, day + timedelta(days=1)])
    next_ids = dict(first_ids or {})
    rows = []
    start = _day_start(day)
    for index, symbol in enumerate(symbols):
        trade_id = next_ids.get(symbol, 1_000_000 * (index + 1))
        base = Decimal(60000 if symbol.startswith("BTC") else 3000)
        moments = sorted(rng.randrange(0, 86_400_000) for _ in range(per_symbol))
        for ms in moments:
            price = (base + Decimal(rng.randrange(-500_000_000, 500_000_000)) / 10**8 * base / 100)
            quantity = Decimal(rng.randrange(1, 200_000_000)) / 10**8
            trade_time = start + timedelta(milliseconds=ms)
            rows.append((symbol, trade_id, price.quantize(Decimal("0.00000001")), quantity,
                         trade_time, trade_time + timedelta(milliseconds=3), rng.random() < 0.5))
            trade_id += 1
        next_ids[symbol] = trade_id
    with conn.cursor() as cursor, cursor.copy(
        "COPY trades (symbol, trade_id, price, quantity, trade_time, event_time, is_buyer_maker)"
        " FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    return next_ids


def insert_sentinels(conn: psycopg.Connection, after: date, next_ids: dict[str, int]) -> None:
    """One trade per symbol just after `after` ends: the stream has passed the day's end."""
    moment = _day_start(after + timedelta(days=1)) + timedelta(seconds=1)
    ensure_partitions(conn, [moment.date()])
    with conn.transaction():
        for symbol, trade_id in next_ids.items():
            conn.execute(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time,"
                " is_buyer_maker) VALUES (%s, %s, 1.5, 0.1, %s, %s, false)",
                (symbol, trade_id, moment, moment),
            )


def expected_facts(conn: psycopg.Connection, day: date) -> list[tuple[Any, ...]]:
    """Per symbol and minute, straight from the raw table: the facts a correct run loads."""
    return conn.execute(
        """
        SELECT symbol, date_trunc('minute', trade_time) AS minute, count(*), min(price),
               max(price), sum(quantity), sum(price * quantity)
        FROM trades WHERE trade_time >= %s AND trade_time < %s
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        (_day_start(day), _day_start(day + timedelta(days=1))),
    ).fetchall()


def warehouse_facts(conn: psycopg.Connection, day: date) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT symbol, trade_minute, trade_count, min_price, max_price, total_quantity,
               total_trade_value
        FROM warehouse.fact_trades WHERE trade_date = %s ORDER BY 1, 2
        """,
        (day,),
    ).fetchall()


def warehouse_counts(conn: psycopg.Connection, day: date) -> dict[str, int]:
    """Rows of the day in each warehouse table (dim_time: the day's minutes)."""
    start, end = _day_start(day), _day_start(day + timedelta(days=1))
    facts = conn.execute(
        "SELECT count(*) FROM warehouse.fact_trades WHERE trade_date = %s", (day,)
    ).fetchone()
    minutes = conn.execute(
        "SELECT count(*) FROM warehouse.dim_time WHERE datetime >= %s AND datetime < %s",
        (start, end),
    ).fetchone()
    symbols = conn.execute("SELECT count(*) FROM warehouse.dim_symbol").fetchone()
    assert facts is not None
    assert minutes is not None
    assert symbols is not None
    return {"fact_trades": facts[0], "dim_time": minutes[0], "dim_symbol": symbols[0]}


def lake_partitions(lake: Path, table: str) -> list[str]:
    """The day partitions of a lake table: `year=YYYY/month=MM/day=DD` with Parquet inside."""
    root = lake / table
    return sorted(
        str(path.relative_to(root))
        for path in root.glob("year=*/month=*/day=*")
        if any(path.glob("*.parquet"))
    )


def lake_snapshot(lake: Path, table: str, day: date) -> dict[str, Any]:
    """The rows of a published day partition, read with pyarrow, sorted: compare two runs."""
    import pyarrow.parquet as pq

    path = lake / table / f"year={day:%Y}" / f"month={day:%m}" / f"day={day:%d}"
    rows = pq.read_table(path).to_pylist()
    return {"files": len(list(path.glob("*.parquet"))),
            "rows": sorted(rows, key=lambda row: sorted((k, str(v)) for k, v in row.items()))}
