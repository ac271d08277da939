"""Backfill benchmark: one generated BTCUSDT day dump -> raw `trades`, beside PostgreSQL's own COPY.

    python -m bench.backfill [--trades 3000000] [--no-staged]

Steps, each into the same day partition (with its primary key) of a scratch database, emptied
and checkpointed before each timed step:

- floor: PostgreSQL's own `COPY ... FROM '<file>'` of the same rows from a plain CSV file
  already in the table's form (server-side file when the server can read it, else the same bytes
  through `COPY FROM STDIN`);
- fresh: `etl.backfill_load.load_dump` of the zip: a day with nothing stored;
- overlap: the same, with the last third of the day already stored by the "streamer";
- staged: the overlap day through a staging table and `INSERT ... SELECT ... ON CONFLICT DO
  NOTHING` (the slower path the loader keeps for scattered stored ids), for reference.

Rates are rows of the file per second of wall time, best of `--repeat` interleaved rounds
(the staged reference runs once). Targets: fresh >= 0.8 x floor, overlap >=
0.4 x floor.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from binance_etl.db import connect, resolve_database_url, with_database
from binance_etl.replay.dumps import generate_trades, write_dump
from binance_etl.schema import ensure_partitions, migrate, partition_name
from binance_etl.settings import load_settings
from etl.backfill_dump import COPY_COLUMNS, RowConverter
from etl.backfill_load import ensure_backfill_log, load_dump

logger = logging.getLogger(__name__)

SYMBOL = "BTCUSDT"
DAY = date(2025, 9, 1)
TARGETS = {"fresh": 0.8, "overlap": 0.4}


def _plain_csv(zip_path: Path, dest: Path) -> int:
    """The dump's rows in the table's CSV form, as the floor's input; returns the row count."""
    converter = RowConverter(SYMBOL, DAY)
    with zipfile.ZipFile(zip_path) as archive, archive.open(archive.infolist()[0]) as source, \
            dest.open("w") as out:
        while chunk := source.read(1 << 20):
            out.write(converter.feed(chunk))
        out.write(converter.finish())
    return converter.rows


def _reset(conn: psycopg.Connection, streamed_csv: Path | None = None) -> None:
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(partition_name(DAY))))
    conn.execute("TRUNCATE backfill_log")
    if streamed_csv is not None:
        _copy_stdin(conn, streamed_csv)
    conn.execute("VACUUM ANALYZE trades")
    conn.execute("CHECKPOINT")


def _copy_statement(source: sql.Composable) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in COPY_COLUMNS)
    return sql.SQL("COPY {} ({}) FROM {} (FORMAT csv)").format(
        sql.Identifier(partition_name(DAY)), columns, source)


def _copy_stdin(conn: psycopg.Connection, path: Path) -> None:
    with conn.cursor() as cursor, cursor.copy(_copy_statement(sql.SQL("STDIN"))) as copy, \
            path.open("rb") as source:
        while chunk := source.read(1 << 20):
            copy.write(chunk)


def _floor(conn: psycopg.Connection, plain: Path) -> tuple[float, str]:
    _reset(conn)
    started = time.perf_counter()
    try:
        conn.execute(_copy_statement(sql.Literal(str(plain))))
        method = "COPY FROM server file"
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile,
            psycopg.OperationalError) as error:
        logger.warning("server-side COPY not possible (%s); timing COPY FROM STDIN instead",
                       str(error).strip().splitlines()[0])
        _reset(conn)
        started = time.perf_counter()
        _copy_stdin(conn, plain)
        method = "COPY FROM STDIN (file bytes)"
    return time.perf_counter() - started, method


def _count(conn: psycopg.Connection) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(partition_name(DAY)))).fetchone()
    assert row is not None
    return int(row[0])


def run(trades: int = 3_000_000, database_url: str | None = None, staged: bool = True,
        repeat: int = 2, workdir: str | None = None) -> dict[str, object]:
    """Measure and return the figures (rates in rows/s, ratios to the floor; best of `repeat`)."""
    server_url = database_url or resolve_database_url(load_settings())
    name = f"bench_backfill_{uuid.uuid4().hex[:8]}"
    # world-readable, so that the server (an unprivileged user) can read the floor's CSV file
    folder = Path(tempfile.mkdtemp(prefix="bench-backfill-", dir=workdir))
    folder.chmod(0o755)
    results: dict[str, object] = {"trades": trades}
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        started = time.perf_counter()
        files = write_dump(folder, SYMBOL, DAY, generate_trades(SYMBOL, DAY, trades))
        plain = folder / "plain.csv"
        rows = _plain_csv(files.zip_path, plain)
        plain.chmod(0o644)
        # the streamer's share of an overlapping day: the last third of the ids (from ~16:00)
        lines = plain.read_text().splitlines(keepends=True)
        streamed = folder / "streamed.csv"
        streamed.write_text("".join(lines[len(lines) * 2 // 3 :]))
        streamed_rows = len(lines) - len(lines) * 2 // 3
        del lines
        results.update(zip_mb=round(files.zip_path.stat().st_size / 1e6, 1),
                       csv_mb=round(plain.stat().st_size / 1e6, 1),
                       prepare_s=round(time.perf_counter() - started, 1))
        with connect(with_database(server_url, name), autocommit=True) as conn:
            migrate(conn)
            ensure_backfill_log(conn)
            ensure_partitions(conn, [DAY])

            # Rounds interleave the steps, and each step keeps its best time: other work on a
            # shared machine slows single runs at random, never speeds them up.
            timings: dict[str, list[float]] = {"floor": [], "fresh": [], "overlap": []}
            for _ in range(repeat):
                seconds, method = _floor(conn, plain)
                assert _count(conn) == rows
                timings["floor"].append(seconds)
                results["floor_method"] = method

                _reset(conn)
                fresh = load_dump(conn, files.zip_path, SYMBOL, DAY, files.sha256)
                assert (fresh.path, fresh.inserted, _count(conn)) == ("fresh", rows, rows)
                timings["fresh"].append(fresh.seconds)

                _reset(conn, streamed)
                overlap = load_dump(conn, files.zip_path, SYMBOL, DAY, files.sha256)
                assert (overlap.path, overlap.already_stored, _count(conn)) == (
                    "anti-join", streamed_rows, rows)
                timings["overlap"].append(overlap.seconds)
            for step, values in timings.items():
                results[f"{step}_s"] = min(values)
                results[f"{step}_runs_s"] = [round(value, 2) for value in values]

            if staged:
                _reset(conn, streamed)
                slow = load_dump(conn, files.zip_path, SYMBOL, DAY, files.sha256, max_ranges=0)
                assert (slow.path, slow.already_stored, _count(conn)) == (
                    "staged", streamed_rows, rows)
                results["staged_s"] = slow.seconds
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
        shutil.rmtree(folder, ignore_errors=True)
    floor_rate = rows / float(results["floor_s"])  # type: ignore[arg-type]
    results["floor_rows_per_s"] = round(floor_rate)
    for step in ("fresh", "overlap", "staged"):
        if f"{step}_s" in results:
            rate = rows / float(results[f"{step}_s"])  # type: ignore[arg-type]
            results[f"{step}_rows_per_s"] = round(rate)
            results[f"{step}_ratio"] = round(rate / floor_rate, 2)
    for step, target in TARGETS.items():
        results[f"{step}_target_met"] = float(results[f"{step}_ratio"]) >= target  # type: ignore[arg-type]
    return results


def print_table(results: dict[str, object], console: Console | None = None) -> None:
    console = console or Console()
    rounds = len(results["floor_runs_s"])  # type: ignore[arg-type]
    table = Table(title=f"backfill: {results['trades']:,} trades of one {SYMBOL} day",
                  caption=f"zip {results['zip_mb']} MB, CSV {results['csv_mb']} MB; "
                          f"best of {rounds} interleaved rounds (seconds of each in 'runs')")
    for column in ("step", "seconds", "rows/s", "x floor", "target", "runs"):
        table.add_column(column, justify="left" if column == "step" else "right")
    def runs(step: str) -> str:
        return " ".join(f"{value:.1f}" for value in results.get(f"{step}_runs_s", []))  # type: ignore[attr-defined]

    table.add_row(f"floor: {results['floor_method']}", f"{results['floor_s']:.1f}",
                  f"{results['floor_rows_per_s']:,}", "1.00", "", runs("floor"))
    labels = {"fresh": "fresh day: load_dump, COPY into the partition",
              "overlap": "overlapping day (1/3 stored): anti-join on id ranges + COPY",
              "staged": "overlapping day: stage + INSERT ... ON CONFLICT (reference)"}
    for step, label in labels.items():
        if f"{step}_s" not in results:
            continue
        target = TARGETS.get(step)
        verdict = ""
        if target is not None:
            verdict = f">= {target} " + ("met" if results[f"{step}_target_met"] else "MISSED")
        table.add_row(label, f"{results[f'{step}_s']:.1f}", f"{results[f'{step}_rows_per_s']:,}",
                      f"{results[f'{step}_ratio']:.2f}", verdict, runs(step))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--trades", type=int, default=3_000_000)
    parser.add_argument("--no-staged", action="store_true", help="skip the reference path")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; best time kept (2)")
    parser.add_argument("--database-url", help="server to use (default: DATABASE_URL or local)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run(args.trades, args.database_url, staged=not args.no_staged, repeat=args.repeat)
    print_table(results, Console(width=None if sys.stdout.isatty() else 120))
    print("results:", json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
