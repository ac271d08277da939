"""History from Binance's public daily trade dumps into the raw `trades` table.

    python -m etl.backfill --symbols BTCUSDT,ETHUSDT --from 2025-09-01 --to 2025-09-10

For each UTC day and symbol: download `<SYMBOL>-trades-<day>.zip` and its `.CHECKSUM` from
`BINANCE_DATA_URL`, verify SHA-256, stream the CSV out of the zip into `COPY`, idempotently
(see `etl/backfill_load.py`), and record the day in `backfill_log`. Days already recorded are
skipped (`--force` loads them again, which adds nothing that is already stored). A missing day
(404), a checksum mismatch or a broken file is reported and the other days go on; the exit code
is 1 when any day was not loaded, and the summary table says which. Then
`python -m etl.main --date <day>` builds the facts of each loaded day.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from binance_etl.db import connect, redact, resolve_database_url
from binance_etl.localpg import LocalPostgresError
from binance_etl.logs import setup_logging
from binance_etl.schema import migrate
from binance_etl.settings import load_settings, parse_symbols
from etl.backfill_dump import DumpFormatError
from etl.backfill_fetch import ChecksumMismatch, DumpMissing, FetchedDump, fetch_dump
from etl.backfill_load import DEFAULT_MAX_RANGES, ensure_backfill_log, finished, load_dump

logger = logging.getLogger(__name__)

FIRST_DUMP_DAY = date(2017, 7, 14)  # Binance opened in July 2017; nothing is published before
MAX_DAYS = 3660

# Outcome of one (symbol, day); every status but "loaded" and "skipped" is a failure.
LOADED, SKIPPED = "loaded", "skipped"
MISSING, BAD_CHECKSUM, BROKEN, DOWNLOAD_FAILED, DB_FAILED = (
    "missing (404)", "checksum mismatch", "broken file", "download failed", "database error",
)


@dataclass(frozen=True)
class BackfillRequest:
    symbols: list[str]
    first: date
    last: date
    force: bool = False

    def days(self) -> Iterator[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)


@dataclass
class DayOutcome:
    symbol: str
    day: date
    status: str
    rows: int = 0
    inserted: int = 0
    already_stored: int = 0
    unit: str = ""
    path: str = ""
    size: int = 0
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (LOADED, SKIPPED)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m etl.backfill",
                     description="Load raw trades from Binance's public daily trade dumps.")
    parser.add_argument("--symbols", help="comma list (default: SYMBOLS)")
    parser.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--force", action="store_true",
                        help="load days again even if backfill_log says they are done")
    parser.add_argument("--retries", type=int, default=3, help="attempts per download (default 3)")
    return parser


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def validate(symbols_text: str | None, default_symbols: Sequence[str], first_text: str,
             last_text: str, today: date, force: bool = False) -> BackfillRequest:
    """The request, or ValueError with one line saying what is wrong."""
    try:
        symbols = parse_symbols(symbols_text) if symbols_text is not None else list(default_symbols)
    except ValueError as error:
        raise ValueError(f"--symbols: {error}") from None
    first, last = _day(first_text, "--from"), _day(last_text, "--to")
    if last > today:
        raise ValueError(f"--to {last} is in the future (today is {today} UTC)")
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    if first < FIRST_DUMP_DAY:
        raise ValueError(f"--from {first} is before Binance's first trades ({FIRST_DUMP_DAY})")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"--from/--to span more than {MAX_DAYS} days")
    return BackfillRequest(symbols, first, last, force)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        TextColumn("{task.fields[what]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} trades/s" if seconds > 0 else ""


def _fetch(
    client: httpx.Client,
    base_url: str,
    symbol: str,
    day: date,
    workdir: Path,
    progress: Progress,
    task: TaskID,
    retries: int,
) -> FetchedDump | DayOutcome:
    """The verified zip, or the failed outcome. Runs in the download thread."""
    label = f"{symbol} {day}"
    started = time.monotonic()

    def on_bytes(done: int, total: int | None) -> None:
        elapsed = time.monotonic() - started
        size = f"{done / 1e6:,.1f}" + (f"/{total / 1e6:,.1f}" if total else "")
        speed = f"{done / 1e6 / elapsed:,.1f} MB/s" if elapsed > 0 else ""
        progress.update(task, completed=done, total=total, what=f"{size} MB", rate=speed)

    progress.reset(task, description=f"download {label}", total=None, what="checksum", rate="")
    outcome = DayOutcome(symbol, day, DOWNLOAD_FAILED)
    try:
        return fetch_dump(client, base_url, symbol, day, workdir, on_bytes, retries)
    except DumpMissing as error:
        outcome.status, outcome.detail = MISSING, f"{error} (not published)"
        logger.error("%s: %s: %s", label, MISSING, error.url)
    except ChecksumMismatch as error:
        outcome.status, outcome.detail = BAD_CHECKSUM, str(error)
    except DumpFormatError as error:
        outcome.status, outcome.detail = BAD_CHECKSUM, f"bad .CHECKSUM file: {error}"
    except httpx.HTTPError as error:
        outcome.detail = f"{type(error).__name__}: {error}"
    if outcome.status != MISSING:
        logger.error("%s: %s: %s", label, outcome.status, outcome.detail)
    outcome.seconds = time.monotonic() - started
    return outcome


def _load(
    conn: psycopg.Connection,
    fetched: FetchedDump,
    symbol: str,
    day: date,
    progress: Progress,
    task: TaskID,
    max_ranges: int,
) -> DayOutcome:
    """Load a verified zip; a broken file or a database error becomes a failed outcome."""
    label = f"{symbol} {day}"
    started = time.monotonic()
    outcome = DayOutcome(symbol, day, LOADED, size=fetched.size)

    def on_rows(read: int, rows: int) -> None:
        elapsed = time.monotonic() - started
        progress.update(task, completed=read, what=f"{read / 1e6:,.0f} MB CSV, {rows:,} rows",
                        rate=_rate(rows, elapsed))

    try:
        with zipfile.ZipFile(fetched.path) as archive:
            member_size = sum(info.file_size for info in archive.infolist())
        progress.reset(task, description=f"load {label}", total=member_size, what="", rate="")
        result = load_dump(conn, fetched.path, symbol, day, fetched.sha256, progress=on_rows,
                           max_ranges=max_ranges)
    except (zipfile.BadZipFile, DumpFormatError, EOFError) as error:
        outcome.status, outcome.detail = BROKEN, f"{type(error).__name__}: {error}"
    except psycopg.Error as error:
        if conn.broken:
            raise
        outcome.status = DB_FAILED
        outcome.detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    finally:
        fetched.path.unlink(missing_ok=True)
    outcome.seconds = time.monotonic() - started
    if outcome.status != LOADED:
        logger.error("%s: %s: %s (nothing of this day was stored)", label, outcome.status,
                     outcome.detail)
        return outcome
    outcome.rows, outcome.inserted, outcome.already_stored = (
        result.rows, result.inserted, result.already_stored)
    outcome.unit, outcome.path = result.unit, result.path
    return outcome


def run_backfill(
    database_url: str,
    base_url: str,
    request: BackfillRequest,
    *,
    console: Console | None = None,
    max_ranges: int = DEFAULT_MAX_RANGES,
    retries: int = 3,
    timeout: float = 60.0,
) -> list[DayOutcome]:
    """Backfill every (day, symbol) of `request`; one outcome each, in day-then-symbol order.

    One thread downloads the next file while this one loads the current file (so at most two
    zips are on disk at a time): the network and the database work at the same time.
    """
    console = console or Console(stderr=True)
    pairs = [(day, symbol) for day in request.days() for symbol in request.symbols]
    outcomes: list[DayOutcome] = []
    with connect(database_url, autocommit=True) as conn:
        migrate(conn)
        ensure_backfill_log(conn)
        done = set() if request.force else finished(conn, request.symbols, request.first,
                                                    request.last)
        pending = [(day, symbol) for day, symbol in pairs if (symbol, day) not in done]
        http_timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        with (
            httpx.Client(timeout=http_timeout, follow_redirects=True) as client,
            tempfile.TemporaryDirectory(prefix="backfill-") as workdir,
            _progress(console) as progress,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-download") as pool,
        ):
            overall = progress.add_task("all days", total=len(pairs), what="", rate="")
            download_task = progress.add_task("", total=None, what="", rate="")
            load_task = progress.add_task("", total=None, what="", rate="")

            def download(index: int) -> Future[FetchedDump | DayOutcome] | None:
                if index >= len(pending):
                    return None
                day, symbol = pending[index]
                return pool.submit(_fetch, client, base_url, symbol, day, Path(workdir),
                                   progress, download_task, retries)

            next_download = download(0)
            started, loaded, fetched_bytes, position = time.monotonic(), 0, 0, 0
            for day, symbol in pairs:
                if (symbol, day) in done:
                    outcome = DayOutcome(symbol, day, SKIPPED, detail="done by an earlier run")
                else:
                    assert next_download is not None
                    fetched = next_download.result()
                    position += 1
                    next_download = download(position)
                    if isinstance(fetched, DayOutcome):
                        outcome = fetched
                    else:
                        outcome = _load(conn, fetched, symbol, day, progress, load_task,
                                        max_ranges)
                outcomes.append(outcome)
                loaded += outcome.inserted
                fetched_bytes += outcome.size
                progress.update(overall, advance=1,
                                what=f"{len(outcomes)}/{len(pairs)} files, "
                                     f"{fetched_bytes / 1e6:,.1f} MB, {loaded:,} trades inserted",
                                rate=_rate(loaded, time.monotonic() - started))
            progress.update(download_task, visible=False)
            progress.update(load_task, visible=False)
    return outcomes


def summary_table(outcomes: Sequence[DayOutcome]) -> Table:
    table = Table(title="backfill summary")
    for name in ("symbol", "day", "status", "rows", "inserted", "already stored", "unit", "path",
                 "MB", "s", "rows/s", "detail"):
        justify = "right" if name in ("rows", "inserted", "already stored", "MB", "s",
                                      "rows/s") else "left"
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for item in outcomes:
        rate = f"{item.rows / item.seconds:,.0f}" if item.rows and item.seconds else ""
        table.add_row(
            item.symbol, str(item.day), item.status if item.ok else f"[red]{item.status}[/red]",
            f"{item.rows:,}", f"{item.inserted:,}", f"{item.already_stored:,}", item.unit,
            item.path, f"{item.size / 1e6:.1f}" if item.size else "",
            f"{item.seconds:.1f}" if item.status != SKIPPED else "", rate, item.detail,
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        settings = load_settings()
        request = validate(args.symbols, settings.symbols, args.first, args.last,
                           datetime.now(UTC).date(), args.force)
    except ValueError as error:
        parser.error(str(error))
    if args.retries < 1:
        parser.error("--retries must be at least 1")
    try:
        database_url = resolve_database_url(settings)
    except LocalPostgresError as error:
        print(f"backfill: local PostgreSQL: {error}", file=sys.stderr)
        return 1
    logger.info("backfill %s, %s..%s from %s into %s", ",".join(request.symbols), request.first,
                request.last, settings.binance_data_url, redact(database_url))
    try:
        outcomes = run_backfill(database_url, settings.binance_data_url, request,
                                retries=args.retries)
    except psycopg.OperationalError as error:
        # the database is unreachable or went away: nothing more can load, so stop with one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"backfill: database {redact(database_url)}: {first_line}", file=sys.stderr)
        return 1
    # a log file or a pipe gets a table wide enough to keep each row on one line
    Console(width=None if sys.stdout.isatty() else 220).print(summary_table(outcomes))
    failed = [item for item in outcomes if not item.ok]
    loaded = sum(item.inserted for item in outcomes)
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} (symbol, day) done, "
          f"{loaded:,} trades inserted; {len(failed)} failed"
          + (": " + ", ".join(f"{item.symbol} {item.day} ({item.status})" for item in failed)
             if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
