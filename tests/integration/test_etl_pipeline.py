"""The day batch end to end on real PostgreSQL and real Spark: raw day → lake → warehouse.

Expected facts are computed independently by PostgreSQL from the raw table (a GROUP BY with
ordered aggregates), never by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from binance_etl.db import connect
from binance_etl.schema import ensure_partitions
from binance_etl.settings import Settings, load_settings
from etl import load as load_module
from etl.main import main, run_day
from etl.pipeline import (
    QualityGateError,
    check_quality,
    load_warehouse,
    publish_lake,
    raw_day_status,
    stage_day,
)

pytestmark = pytest.mark.integration

SYMBOLS = {
    # symbol: (first trade id, base price, price tick, quantity lot)
    "BTCUSDT": (5_000_000_000, "112345.12345678", "0.01", "0.00001234"),
    "1000PEPEUSDT": (90_000_000, "0.01012345", "0.00000001", "1234.56789"),
    "ETHBTC": (300_000, "0.03612345", "0.00000001", "0.0001"),
}

EXPECTED_FACTS_SQL = """
SELECT symbol, date_trunc('minute', trade_time) AS trade_minute,
       min(price) AS min_price, max(price) AS max_price,
       round(sum(price)::numeric(60, 24) / count(*), 12) AS avg_price,
       sum(quantity) AS total_quantity, sum(price * quantity) AS total_trade_value,
       count(*) AS trade_count,
       (array_agg(price ORDER BY trade_time, trade_id))[1] AS open_price,
       (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1] AS close_price,
       round(sum(price * quantity)::numeric(60, 24) / sum(quantity), 12) AS vwap,
       coalesce(sum(quantity) FILTER (WHERE NOT is_buyer_maker), 0) AS taker_buy_quantity,
       %(day)s::date AS trade_date
FROM trades
WHERE trade_time >= %(start)s AND trade_time < %(end)s
GROUP BY 1, 2
"""

FACT_COLUMNS = (
    "symbol, trade_minute, min_price, max_price, avg_price, total_quantity, total_trade_value, "
    "trade_count, open_price, close_price, vwap, taker_buy_quantity, trade_date"
)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def insert_day(
    conn: psycopg.Connection, day: date, per_symbol: int, *, skip_id: int | None = None,
    id_offset: int = 0, boundaries: bool = True, micro: bool = False,
) -> None:
    """A generated day: `per_symbol` trades per symbol spread over the day, several per
    millisecond for 1000PEPEUSDT, (`micro`) two more a few microseconds apart for ETHBTC, plus
    boundary trades (the day's first instant, the previous
    day's last millisecond, the next day's first instant)."""
    ensure_partitions(conn, [day - timedelta(days=1), day, day + timedelta(days=1)])
    start = day_start(day)
    for symbol, (first_id, base, tick, lot) in SYMBOLS.items():
        same_ms = 3 if symbol == "1000PEPEUSDT" else 1
        conn.execute(
            """
            INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, event_time,
                                is_buyer_maker)
            SELECT %(symbol)s, %(first)s + g,
                   %(base)s::numeric + ((g * 7919) %% 1000) * %(tick)s::numeric,
                   ((g * 104729) %% 99991 + 1) * %(lot)s::numeric,
                   %(start)s + ((g / %(same)s) * (86399999 / %(n)s)) * interval '1 millisecond',
                   %(start)s + ((g / %(same)s) * (86399999 / %(n)s) + 3) * interval '1 millisecond',
                   (g * 31) %% 7 < 3
            FROM generate_series(0, %(n)s - 1) AS g
            WHERE g IS DISTINCT FROM %(skip)s
            """,
            {"symbol": symbol, "first": first_id + id_offset, "base": base, "tick": tick,
             "lot": lot, "start": start, "n": per_symbol, "same": same_ms, "skip": skip_id},
        )
        if micro and symbol == "ETHBTC":
            # Microsecond times (as in Binance's 2025+ dumps), in the reverse order of their
            # ids, opening minute 00:07: truncated to milliseconds, open/close would flip.
            last = first_id + id_offset + per_symbol
            conn.execute(
                """
                INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker)
                VALUES (%(s)s, %(a)s, 0.03700001, 1, %(t)s + interval '7 microseconds', false),
                       (%(s)s, %(b)s, 0.03500001, 1, %(t)s + interval '3 microseconds', true)
                ON CONFLICT DO NOTHING
                """,
                {"s": symbol, "a": last, "b": last + 1, "t": start + timedelta(minutes=7)},
            )
        if not boundaries:
            continue
        last = first_id + id_offset + per_symbol
        conn.execute(
            """
            INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker)
            VALUES (%(s)s, %(before)s, 1, 1, %(prev)s, false),
                   (%(s)s, %(after)s, 1, 1, %(next)s, true)
            ON CONFLICT DO NOTHING
            """,
            {"s": symbol, "before": first_id + id_offset - 1,
             "prev": start - timedelta(milliseconds=1), "after": last + 10_000,
             "next": start + timedelta(days=1)},
        )


def settings_for(pg_url: str, lake: str, **extra: Any) -> Settings:
    return load_settings(
        database_url=pg_url, warehouse_url=pg_url, lake_uri=lake, symbols=list(SYMBOLS),
        spark_master="local[2]", jdbc_partitions=2, **extra,
    )


def expected_minus_warehouse(conn: psycopg.Connection, day: date) -> tuple[int, int]:
    """(rows only in the expectation, rows only in the warehouse) for the day's facts."""
    start = day_start(day)
    params = {"day": day, "start": start, "end": start + timedelta(days=1)}
    missing = conn.execute(
        f"SELECT count(*) FROM ({EXPECTED_FACTS_SQL} EXCEPT ALL "
        f"SELECT {FACT_COLUMNS} FROM warehouse.fact_trades WHERE trade_date = %(day)s) x",
        params,
    ).fetchone()
    extra = conn.execute(
        f"SELECT count(*) FROM (SELECT {FACT_COLUMNS} FROM warehouse.fact_trades "
        f"WHERE trade_date = %(day)s EXCEPT ALL {EXPECTED_FACTS_SQL}) x",
        params,
    ).fetchone()
    assert missing is not None
    assert extra is not None
    return int(missing[0]), int(extra[0])


def scalar(conn: psycopg.Connection, sql: str, *params: object) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def fact_figure(conn: psycopg.Connection, aggregate: str, day: date) -> Any:
    """An aggregate (a constant expression from the test itself) over the day's facts."""
    return scalar(conn, f"SELECT {aggregate} FROM warehouse.fact_trades WHERE trade_date = %s", day)


def parquet_files(lake: Path, table: str, day: date) -> list[Path]:
    folder = lake / table / f"year={day.year:04d}" / f"month={day.month:02d}" / f"day={day.day:02d}"
    return sorted(folder.glob("*.parquet"))


def test_day_to_lake_and_warehouse_then_rerun(
    spark: object, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path
) -> None:
    day = date(2025, 9, 10)
    insert_day(pg_conn, day, per_symbol=3000, micro=True)
    settings = settings_for(pg_url, str(tmp_path / "lake"))

    summary = run_day(day, settings)

    in_day = scalar(pg_conn, "SELECT count(*) FROM trades WHERE trade_time >= %s "
                    "AND trade_time < %s", day_start(day), day_start(day) + timedelta(days=1))
    assert summary.rows_read == in_day == 3 * 3000 + 2
    assert summary.symbols == 3
    assert summary.files == 3
    assert summary.bytes > 0
    lake = tmp_path / "lake"
    for table in ("dim_time", "dim_symbol", "fact_trades"):
        assert len(parquet_files(lake, table, day)) == 1, table
    report_path = lake / "quality_reports/year=2025/month=09/day=10/quality.json"
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["symbols"]["BTCUSDT"]["raw_trade_count"] == 3000
    assert not (lake / "_staging" / day.isoformat()).exists()

    assert expected_minus_warehouse(pg_conn, day) == (0, 0)
    # microseconds survive the JDBC read: the 3 µs trade opens the minute, not the lower id
    assert scalar(pg_conn, "SELECT open_price FROM warehouse.fact_trades WHERE symbol = "
                  "'ETHBTC' AND trade_minute = %s", day_start(day) + timedelta(minutes=7),
                  ) == Decimal("0.03500001")
    assert scalar(pg_conn, "SELECT count(*) FROM warehouse.dim_time WHERE datetime >= %s "
                  "AND datetime < %s", day_start(day), day_start(day) + timedelta(days=1)) == 1440
    symbols = pg_conn.execute(
        "SELECT symbol, base_asset, quote_asset FROM warehouse.dim_symbol ORDER BY symbol"
    ).fetchall()
    assert ("1000PEPEUSDT", "1000PEPE", "USDT") in symbols
    assert ("ETHBTC", "ETH", "BTC") in symbols
    facts_before = fact_figure(pg_conn, "count(*)", day)

    # A rerun replaces the day everywhere: same rows, one file per table, no duplicates.
    again = run_day(day, settings)
    assert again.rows_read == summary.rows_read
    for table in ("dim_time", "dim_symbol", "fact_trades"):
        assert len(parquet_files(lake, table, day)) == 1, table
    assert fact_figure(pg_conn, "count(*)", day) == facts_before
    assert scalar(pg_conn, "SELECT count(*) - count(DISTINCT symbol) FROM warehouse.dim_symbol") \
        == 0
    assert scalar(pg_conn, "SELECT count(*) - count(DISTINCT datetime) FROM warehouse.dim_time") \
        == 0
    assert expected_minus_warehouse(pg_conn, day) == (0, 0)


def test_crash_between_lake_and_warehouse_then_rerun(
    spark: object, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    day = date(2025, 9, 11)
    insert_day(pg_conn, day, per_symbol=500)
    settings = settings_for(pg_url, str(tmp_path / "lake"))
    run_day(day, settings)
    first = fact_figure(pg_conn, "sum(trade_count)", day)
    assert first == 3 * 500

    # More trades arrive (late gap fill); the day is staged and published, then the process
    # "crashes" before the warehouse load: lake is new, warehouse still old.
    insert_day(pg_conn, day, per_symbol=300, id_offset=500, boundaries=False)
    assert stage_day(day, settings)["passed"] is True
    check_quality(day, settings)
    publish_lake(day, settings)

    # A load that dies half-way (after the facts' DELETE) rolls back: the old copy stays.
    real_copy = load_module.PostgresTarget.copy_into

    def dying_copy(self: Any, cursor: Any, relation: str, table: str, when: date) -> None:
        if table == "fact_trades":
            raise ConnectionError("simulated crash during COPY")
        real_copy(self, cursor, relation, table, when)

    monkeypatch.setattr(load_module.PostgresTarget, "copy_into", dying_copy)
    with pytest.raises(ConnectionError):
        load_warehouse(day, settings)
    assert fact_figure(pg_conn, "sum(trade_count)", day) == first
    monkeypatch.undo()

    # The rerun converges: exactly one copy of the new day, equal to PostgreSQL's own figures.
    run_day(day, settings)
    assert fact_figure(pg_conn, "sum(trade_count)", day) == 3 * 800
    assert expected_minus_warehouse(pg_conn, day) == (0, 0)
    assert len(parquet_files(tmp_path / "lake", "fact_trades", day)) == 1


def test_failing_gate_publishes_nothing(
    spark: object, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    day = date(2025, 9, 12)
    insert_day(pg_conn, day, per_symbol=400, skip_id=123)  # one missing trade id per symbol
    lake = tmp_path / "lake"
    for name, value in {"DATABASE_URL": pg_url, "WAREHOUSE_URL": pg_url, "LAKE_URI": str(lake),
                        "SYMBOLS": ",".join(SYMBOLS), "SPARK_MASTER": "local[2]",
                        "GAP_FAIL_THRESHOLD": "0"}.items():
        monkeypatch.setenv(name, value)

    ok, why = raw_day_status(day)
    assert ok is False
    assert "1 trade id(s) missing" in why

    assert main(["--date", day.isoformat()]) == 1
    assert "quality gate failed" in capsys.readouterr().err
    for table in ("dim_time", "dim_symbol", "fact_trades"):
        assert parquet_files(lake, table, day) == []
    assert not list((lake / "_staging" / day.isoformat()).rglob("*.parquet"))
    report = json.loads((lake / "_staging" / day.isoformat() / "quality.json").read_text())
    verdicts = {check["name"]: check["passed"] for check in report["checks"]}
    assert verdicts["trade_id_continuity"] is False
    assert verdicts["reconciliation"] is True
    assert report["symbols"]["ETHBTC"]["missing_trade_ids"] == 1
    with pytest.raises(QualityGateError):
        check_quality(day)
    with pytest.raises(QualityGateError):
        publish_lake(day)  # refuses a failed day even when asked directly
    with pytest.raises(FileNotFoundError):
        load_warehouse(day)
    with connect(pg_url) as conn:
        assert fact_figure(conn, "count(*)", day) == 0

    # A tolerated gap (threshold 1) passes; the stream passed the day's end for every symbol.
    monkeypatch.setenv("GAP_FAIL_THRESHOLD", "1")
    assert main(["--date", day.isoformat()]) == 0
    assert len(parquet_files(lake, "fact_trades", day)) == 1


def test_raw_day_status_complete_and_incomplete(
    pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path
) -> None:
    day = date(2025, 9, 13)
    settings = settings_for(pg_url, str(tmp_path / "lake"))
    insert_day(pg_conn, day, per_symbol=50)
    complete = (True, f"{day} complete for BTCUSDT, 1000PEPEUSDT, ETHBTC")
    assert raw_day_status(day, settings) == complete
    pg_conn.execute("DELETE FROM trades WHERE symbol = 'ETHBTC' AND trade_time >= %s",
                    (day_start(day) + timedelta(days=1),))
    ok, why = raw_day_status(day, settings)
    assert ok is False
    assert "ETHBTC: no trade stored after the day's end yet" in why
