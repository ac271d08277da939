"""`python -m etl.reconcile --date YYYY-MM-DD [--live]` — a day against Binance's 1m klines.

The same comparison as the quality gate's exchange check (`etl.exchange`), on demand: the
warehouse's `fact_trades` of the day, or with `--live` today's closed minute bars in the raw
store's `bars_1m` (complete bars only, up to the last complete minute of each symbol) against
REST klines. Prints a table per symbol and the first mismatching minutes per column.

Exit codes: 0 every compared minute agrees, 1 a mismatch, 2 bad input or configuration,
3 nothing could be compared (klines unavailable, or the store unreachable).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from binance_etl.db import connect, resolve_database_url, resolve_warehouse_url
from binance_etl.localpg import LocalPostgresError
from binance_etl.logs import setup_logging
from binance_etl.rest import RestError
from binance_etl.settings import Settings, SettingsError, load_settings
from etl.exchange import (
    FACT_COLUMNS,
    SHOWN_PER_COLUMN,
    Comparison,
    compare,
    minute_iso,
    rows_by_symbol,
    summarise,
)
from etl.klines_source import day_ms, fetch_day_klines, fetch_rest_range
from etl.load import WAREHOUSE_SCHEMA
from etl.redshift import connect_redshift, qualified
from etl.utils import DayError, check_not_future, parse_day

logger = logging.getLogger(__name__)

COLUMN_LIST = ", ".join(FACT_COLUMNS)
BARS_SQL = f"""
SELECT {COLUMN_LIST} FROM public.bars_1m
WHERE trade_minute >= %(start)s AND trade_minute < %(end)s AND complete
ORDER BY symbol, trade_minute
"""


def warehouse_rows(day: date, settings: Settings) -> list[dict[str, Any]]:
    """The day's `fact_trades` rows (local PostgreSQL or Redshift: the same SQL)."""
    conn: Any
    if settings.warehouse_is_redshift:
        conn = connect_redshift(str(settings.warehouse_url))
    else:
        conn = connect(resolve_warehouse_url(settings))
    try:
        cursor = conn.cursor()
        cursor.execute(
            f"SELECT {COLUMN_LIST} FROM {qualified(WAREHOUSE_SCHEMA, 'fact_trades')} "
            "WHERE trade_date = %s", (day,))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def reconcile_day(day: date, settings: Settings) -> tuple[Comparison, dict[str, str]]:
    """The warehouse's day against the day's klines (dump, else REST)."""
    ours = rows_by_symbol(warehouse_rows(day, settings))
    symbols = sorted(set(settings.symbols) | set(ours))
    day_klines = fetch_day_klines(settings.binance_data_url, settings.binance_rest_url,
                                  symbols, day)
    comparison = compare(ours, {s: got.klines for s, got in day_klines.symbols.items()},
                         day_ms(day))
    for symbol, got in day_klines.symbols.items():
        comparison.symbols[symbol].source = got.source
    return comparison, dict(day_klines.unavailable)


def reconcile_live(settings: Settings, now: datetime | None = None
                   ) -> tuple[Comparison, dict[str, str]]:
    """Today's complete bars in `bars_1m` against REST klines, per symbol up to its last
    complete bar's minute (later minutes are still being filled)."""
    now = now or datetime.now(UTC)
    start, _ = day_ms(now.date())
    current_minute = int(now.timestamp() * 1000) // 60_000 * 60_000
    with connect(resolve_database_url(settings), autocommit=True) as conn, conn.cursor(
        row_factory=dict_row
    ) as cursor:
        cursor.execute(BARS_SQL, {"start": datetime.fromtimestamp(start / 1000, UTC),
                                  "end": datetime.fromtimestamp(current_minute / 1000, UTC)})
        ours = rows_by_symbol(cursor.fetchall())
    comparison = Comparison()
    skipped: dict[str, str] = {}
    for symbol in sorted(set(settings.symbols) | set(ours)):
        bars = ours.get(symbol, {})
        if not bars:
            skipped[symbol] = "no complete bar today"
            continue
        end = max(bars) + 60_000
        try:
            klines = fetch_rest_range(settings.binance_rest_url, symbol, start, end)
        except RestError as error:
            skipped[symbol] = f"REST unavailable ({error})"
            continue
        part = compare({symbol: bars}, {symbol: klines}, (start, end))
        comparison.symbols.update(part.symbols)
        comparison.symbols[symbol].source = "rest"
        comparison.mismatches.extend(part.mismatches)
    return comparison, skipped


def symbols_table(comparison: Comparison, skipped: Mapping[str, str], title: str) -> Table:
    table = Table(title=title)
    for name in ("symbol", "klines", "minutes", "differ", "our trades", "Binance trades",
                 "lost", "extra"):
        table.add_column(name, justify="left" if name in ("symbol", "klines") else "right")
    for symbol, result in sorted(comparison.symbols.items()):
        style = "red" if result.minutes_mismatched else "green"
        table.add_row(symbol, result.source, f"{result.minutes_compared:,}",
                      f"[{style}]{result.minutes_mismatched:,}[/]", f"{result.our_trades:,}",
                      f"{result.their_trades:,}", f"{result.lost_trades:,}",
                      f"{result.extra_trades:,}")
    for symbol, reason in sorted(skipped.items()):
        table.add_row(symbol, f"[yellow]skipped: {reason}[/]", "", "", "", "", "", "")
    return table


def mismatch_table(comparison: Comparison) -> Table:
    table = Table(title=f"mismatching minutes (first {SHOWN_PER_COLUMN} per column)")
    table.add_column("column", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    table.add_column("minute (UTC)", no_wrap=True, min_width=17)
    for name in ("ours", "Binance"):
        table.add_column(name, justify="right", overflow="fold")
    for column, items in comparison.by_column().items():
        for item in items[:SHOWN_PER_COLUMN]:
            table.add_row(column, item.symbol, minute_iso(item.minute_ms), str(item.ours),
                          str(item.theirs))
        if len(items) > SHOWN_PER_COLUMN:
            table.add_row(column, f"… {len(items) - SHOWN_PER_COLUMN} more", "", "", "")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.reconcile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--date", help="the UTC day, YYYY-MM-DD (with --live: today, the "
                                       "default)")
    parser.add_argument("--live", action="store_true",
                        help="today's complete bars in bars_1m instead of the warehouse")
    args = parser.parse_args(argv)
    setup_logging()
    out, err = Console(), Console(stderr=True)
    try:
        settings = load_settings()
        if args.live:
            today = datetime.now(UTC).date()
            if args.date is not None and parse_day(args.date) != today:
                raise DayError(f"--live compares today ({today}), not {args.date}")
            comparison, skipped = reconcile_live(settings)
            title = f"bars_1m of {today} (closed minutes) against Binance's 1m klines"
        else:
            if args.date is None:
                parser.error("--date is required (or --live)")
            day = parse_day(args.date)
            check_not_future(day)
            comparison, skipped = reconcile_day(day, settings)
            title = f"warehouse fact_trades of {day} against Binance's 1m klines"
    except (DayError, SettingsError) as error:
        err.print(f"error: {getattr(error, 'message', error)}", markup=False, highlight=False,
                  soft_wrap=True)
        return 2
    except (psycopg.Error, LocalPostgresError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        err.print(f"error: cannot read the store: {first}", markup=False, highlight=False,
                  soft_wrap=True)
        return 3
    out.print(symbols_table(comparison, skipped, title))
    if not comparison.symbols:
        err.print("error: nothing compared: klines unavailable for every symbol", markup=False,
                  soft_wrap=True)
        return 3
    if not comparison.passed:
        out.print(mismatch_table(comparison))
    out.print(summarise(comparison), markup=False, highlight=False, soft_wrap=True)
    return 0 if comparison.passed else 1


if __name__ == "__main__":
    sys.exit(main())
