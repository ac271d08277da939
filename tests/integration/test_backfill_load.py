"""Backfill end to end: generated dumps served over HTTP on 127.0.0.1 -> real PostgreSQL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from binance_etl.db import connect
from binance_etl.replay.dumps import DumpTrade, Fault, day_start_us, generate_trades, write_dump
from binance_etl.schema import ensure_partitions
from etl.backfill import (
    BAD_CHECKSUM,
    BROKEN,
    LOADED,
    MISSING,
    SKIPPED,
    BackfillRequest,
    DayOutcome,
    run_backfill,
)
from etl.backfill_load import LoadResult, load_dump
from tests.plugins.backfill import DumpServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000
DAY_US = 86_400 * US


def backfill(server: DumpServer, url: str, symbols: list[str], first: date, last: date,
             **options: object) -> dict[tuple[str, date], DayOutcome]:
    request = BackfillRequest(symbols, first, last, bool(options.pop("force", False)))
    console = Console(file=io.StringIO(), width=200)
    outcomes = run_backfill(url, server.url, request, console=console, retries=2,
                            timeout=10.0, **options)  # type: ignore[arg-type]
    return {(item.symbol, item.day): item for item in outcomes}


def stored(conn: psycopg.Connection, symbol: str | None = None) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT symbol, trade_id, price, quantity, trade_time, event_time, is_buyer_maker,"
        " ingested_at FROM trades WHERE %(s)s::text IS NULL OR symbol = %(s)s"
        " ORDER BY symbol, trade_id, trade_time",
        {"s": symbol},
    ).fetchall()


def expected_rows(symbol: str, trades: list[DumpTrade]) -> list[tuple[object, ...]]:
    return [(symbol, t.trade_id, t.price, t.quantity, t.trade_time, None, t.is_buyer_maker)
            for t in trades]


def test_exact_rows_for_both_time_units(dump_server: DumpServer, pg_url: str,
                                        backfill_conn: psycopg.Connection) -> None:
    ms_day, us_day, odd_day = date(2024, 12, 31), date(2025, 1, 1), date(2025, 1, 2)

    def edge_trades(day: date, first_id: int, step_us: int) -> list[DumpTrade]:
        start = day_start_us(day)
        return [
            DumpTrade(first_id, 1, 99_999_999_999, start, True),  # 0.00000001 at 00:00:00
            DumpTrade(first_id + 1, 1_234_567_812_345_678, 100_000_000,
                      start + 12 * 3600 * US + 34_000 + (567 if step_us == 1 else 0), False),
            DumpTrade(first_id + 2, 10_824_601_000_000, 10_000,
                      start + DAY_US - step_us, True),  # the last representable instant
        ]

    ms_trades = edge_trades(ms_day, 3_000_000_000, 1000)
    us_trades = edge_trades(us_day, 3_100_000_000, 1)
    odd_trades = edge_trades(odd_day, 3_200_000_000, 1000)  # a 2025 day printed in milliseconds
    write_dump(dump_server.dumps_dir, "BTCUSDT", ms_day, ms_trades)
    write_dump(dump_server.dumps_dir, "BTCUSDT", us_day, us_trades)
    write_dump(dump_server.dumps_dir, "BTCUSDT", odd_day, odd_trades, unit="ms")

    outcomes = backfill(dump_server, pg_url, ["BTCUSDT"], ms_day, odd_day)

    assert [(o.status, o.unit, o.path, o.rows, o.inserted) for o in outcomes.values()] == [
        (LOADED, "ms", "fresh", 3, 3), (LOADED, "us", "fresh", 3, 3), (LOADED, "ms", "fresh", 3, 3)
    ]
    rows = [row[:7] for row in stored(backfill_conn)]
    assert rows == expected_rows("BTCUSDT", ms_trades + us_trades + odd_trades)
    # spot-check the independent expectation itself against literal values
    assert rows[0][2] == Decimal("0.00000001")
    assert rows[0][3] == Decimal("999.99999999")
    assert rows[4][4] == datetime(2025, 1, 1, 12, 0, 0, 34_567, tzinfo=UTC)
    assert rows[5][4] == datetime(2025, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    assert rows[2][4] == datetime(2024, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    log = backfill_conn.execute(
        "SELECT day, rows, inserted, time_unit, load_path FROM backfill_log ORDER BY day"
    ).fetchall()
    assert log == [(ms_day, 3, 3, "ms", "fresh"), (us_day, 3, 3, "us", "fresh"),
                   (odd_day, 3, 3, "ms", "fresh")]


def test_rerun_changes_nothing(dump_server: DumpServer, pg_url: str,
                               backfill_conn: psycopg.Connection) -> None:
    days = [date(2025, 9, 1), date(2025, 9, 2)]
    for index, day in enumerate(days):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            trades = generate_trades(symbol, day, 1500, first_id=10_000 + 1500 * index)
            write_dump(dump_server.dumps_dir, symbol, day, trades)

    first = backfill(dump_server, pg_url, ["BTCUSDT", "ETHUSDT"], days[0], days[1])
    assert {o.status for o in first.values()} == {LOADED}
    before = stored(backfill_conn)
    assert len(before) == 6000
    zips_fetched = dump_server.requested(".zip")
    assert zips_fetched == 4

    again = backfill(dump_server, pg_url, ["BTCUSDT", "ETHUSDT"], days[0], days[1])
    assert {o.status for o in again.values()} == {SKIPPED}
    assert dump_server.requested(".zip") == zips_fetched  # finished days are not downloaded

    forced = backfill(dump_server, pg_url, ["BTCUSDT", "ETHUSDT"], days[0], days[1], force=True)
    assert [(o.status, o.path, o.inserted, o.already_stored) for o in forced.values()] == [
        (LOADED, "anti-join", 0, 1500)] * 4
    assert stored(backfill_conn) == before  # same rows, same ingested_at: nothing rewritten


@pytest.mark.parametrize(("max_ranges", "path"), [(100_000, "anti-join"), (0, "staged")])
def test_overlap_with_streamed_trades_keeps_one_row_per_trade(
    dump_server: DumpServer, pg_url: str, backfill_conn: psycopg.Connection,
    max_ranges: int, path: str,
) -> None:
    day = date(2025, 9, 3)
    trades = list(generate_trades("BTCUSDT", day, 3000, first_id=5_000_000))
    write_dump(dump_server.dumps_dir, "BTCUSDT", day, trades)
    # What the streamer stored earlier: two runs of ids, with millisecond times and event times
    # (so the primary key differs from the dump's microsecond rows for the same trade).
    streamed = trades[100:200] + trades[2000:]
    other_symbol_same_ids = trades[:50]
    ensure_partitions(backfill_conn, [day])
    with backfill_conn.cursor() as cursor, cursor.copy(
        "COPY trades (symbol, trade_id, price, quantity, trade_time, event_time, is_buyer_maker)"
        " FROM STDIN"
    ) as copy:
        for symbol, batch in (("BTCUSDT", streamed), ("ETHUSDT", other_symbol_same_ids)):
            for t in batch:
                ms_time = t.trade_time.replace(microsecond=t.trade_time.microsecond // 1000 * 1000)
                copy.write_row((symbol, t.trade_id, t.price, t.quantity, ms_time,
                                ms_time + timedelta(milliseconds=3), t.is_buyer_maker))
    assert any(t.time_us % 1000 for t in streamed)  # the two keys really differ for some trades
    streamed_before = stored(backfill_conn, "BTCUSDT")

    outcome = backfill(dump_server, pg_url, ["BTCUSDT"], day, day,
                       max_ranges=max_ranges)[("BTCUSDT", day)]

    assert (outcome.status, outcome.path) == (LOADED, path)
    assert (outcome.rows, outcome.inserted, outcome.already_stored) == (3000, 1900, 1100)
    rows = stored(backfill_conn, "BTCUSDT")
    assert [row[1] for row in rows] == [t.trade_id for t in trades]  # each trade exactly once
    by_id = {row[1]: row for row in rows}
    for row in streamed_before:  # streamed rows kept untouched
        assert by_id[row[1]] == row
    fresh = [t for t in trades if t.trade_id not in {row[1] for row in streamed_before}]
    assert [by_id[t.trade_id][:7] for t in fresh] == expected_rows("BTCUSDT", fresh)
    assert len(stored(backfill_conn, "ETHUSDT")) == 50


def test_resume_after_a_failed_day(dump_server: DumpServer, pg_url: str,
                                   backfill_conn: psycopg.Connection) -> None:
    days = [date(2025, 9, 4) + timedelta(days=n) for n in range(3)]
    trades = {day: list(generate_trades("BTCUSDT", day, 2000, first_id=1_000 * (n + 1) * 100))
              for n, day in enumerate(days)}
    for day in days:
        # the middle day's archive opens and streams rows, then fails its CRC check at the end
        fault: Fault | None = "bad-crc" if day == days[1] else None
        write_dump(dump_server.dumps_dir, "BTCUSDT", day, trades[day], fault=fault)

    first = backfill(dump_server, pg_url, ["BTCUSDT"], days[0], days[2])

    assert [o.status for o in first.values()] == [LOADED, BROKEN, LOADED]
    assert "CRC" in first[("BTCUSDT", days[1])].detail
    count = backfill_conn.execute("SELECT count(*) FROM trades_20250905").fetchone()
    assert count == (0,)  # the rows sent before the failure were rolled back
    logged = backfill_conn.execute("SELECT day FROM backfill_log ORDER BY day").fetchall()
    assert logged == [(days[0],), (days[2],)]

    write_dump(dump_server.dumps_dir, "BTCUSDT", days[1], trades[days[1]])  # republished
    dump_server.requests.clear()
    second = backfill(dump_server, pg_url, ["BTCUSDT"], days[0], days[2])

    assert [o.status for o in second.values()] == [SKIPPED, LOADED, SKIPPED]
    assert [p for p in dump_server.requests if p.endswith(".zip")] == [
        "/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-09-05.zip"]
    rows = [row[:7] for row in stored(backfill_conn)]
    assert rows == expected_rows("BTCUSDT", trades[days[0]] + trades[days[1]] + trades[days[2]])


def test_interrupted_download_is_retried(dump_server: DumpServer, pg_url: str,
                                         backfill_conn: psycopg.Connection) -> None:
    day = date(2025, 9, 8)
    files = write_dump(dump_server.dumps_dir, "ETHUSDT", day,
                       generate_trades("ETHUSDT", day, 5000))
    dump_server.drop_next[files.zip_path.name] = 1  # first response cut in the middle

    outcome = backfill(dump_server, pg_url, ["ETHUSDT"], day, day)[("ETHUSDT", day)]

    assert (outcome.status, outcome.rows, outcome.inserted) == (LOADED, 5000, 5000)
    assert dump_server.requested(".zip") == 2


def test_cli_reports_missing_bad_checksum_and_truncated_days(
    dump_server: DumpServer, pg_url: str, backfill_conn: psycopg.Connection
) -> None:
    days = [date(2025, 9, 10) + timedelta(days=n) for n in range(4)]
    faults: dict[date, Fault] = {days[2]: "bad-checksum", days[3]: "truncated"}
    for n, day in enumerate(days):
        write_dump(dump_server.dumps_dir, "ETHUSDT", day,
                   generate_trades("ETHUSDT", day, 800, first_id=900_000 + 800 * n))
        if day != days[1]:  # BTCUSDT's second day is not published
            write_dump(dump_server.dumps_dir, "BTCUSDT", day,
                       generate_trades("BTCUSDT", day, 1000, first_id=700_000 + 1000 * n),
                       fault=faults.get(day))
    env = {**os.environ, "DATABASE_URL": pg_url, "BINANCE_DATA_URL": dump_server.url}

    result = subprocess.run(
        [sys.executable, "-m", "etl.backfill", "--symbols", "btcusdt,ETHUSDT",
         "--from", str(days[0]), "--to", str(days[3]), "--retries", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 1, result.stderr
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line == (
        "5 of 8 (symbol, day) done, 4,200 trades inserted; 3 failed: "
        f"BTCUSDT {days[1]} ({MISSING}), BTCUSDT {days[2]} ({BAD_CHECKSUM}), "
        f"BTCUSDT {days[3]} ({BROKEN})"
    )
    log = result.stderr
    assert (f"BTCUSDT 2025-09-11: missing (404): {dump_server.url}/data/spot/daily/trades/BTCUSDT/"
            "BTCUSDT-trades-2025-09-11.zip.CHECKSUM") in log
    assert "BTCUSDT 2025-09-12: checksum mismatch: SHA-256 of BTCUSDT-trades-2025-09-12.zip" in log
    assert "BTCUSDT 2025-09-13: broken file: BadZipFile" in log
    assert "backfill summary" in result.stdout
    counts = backfill_conn.execute(
        "SELECT symbol, trade_time::date, count(*) FROM trades GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert counts == [("BTCUSDT", days[0], 1000)] + [("ETHUSDT", day, 800) for day in days]
    logged = backfill_conn.execute("SELECT count(*) FROM backfill_log").fetchone()
    assert logged == (5,)


def test_concurrent_loads_of_the_same_day_store_each_trade_once(
    tmp_path: Path, pg_url: str, backfill_conn: psycopg.Connection
) -> None:
    day = date(2025, 9, 20)
    trades = list(generate_trades("BTCUSDT", day, 20_000, first_id=42_000_000))
    files = write_dump(tmp_path, "BTCUSDT", day, trades)
    barrier = threading.Barrier(2)

    def load() -> LoadResult:
        with connect(pg_url, autocommit=True) as conn:
            barrier.wait(timeout=30)
            return load_dump(conn, files.zip_path, "BTCUSDT", day, files.sha256)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [future.result(timeout=60) for future in [pool.submit(load), pool.submit(load)]]

    # the partition lock serialises them: one inserts everything, the other finds it stored
    assert sorted((r.inserted, r.already_stored) for r in results) == [(0, 20_000), (20_000, 0)]
    assert sorted(r.path for r in results) == ["anti-join", "fresh"]
    assert [row[:7] for row in stored(backfill_conn)] == expected_rows("BTCUSDT", trades)
