"""`make demo`: the pipeline end to end on local defaults.

1. the project's own PostgreSQL (or DATABASE_URL), migrated;
2. Binance when it answers, otherwise the bundled Binance-compatible replay feed (WebSocket,
   REST and daily dump files for yesterday, generated in Binance's real format);
3. yesterday's history from the daily dumps (`python -m etl.backfill`);
4. live trades for a while (`python stream.py --duration N`), and beside them the live minute
   bars (`python -m live`), stopped once they count every stored trade; a few bars printed;
5. the daily batch for yesterday (`python -m etl.main`): Spark -> Parquet lake -> warehouse,
   its quality gate checking every minute against the exchange's own 1m klines and its report
   comparing yesterday's facts with the live bars, through a
   Spark Connect server (SPARK_REMOTE's, the one `python -m etl.connect_server start` left
   running, or one started here in the background during steps 2-4 and stopped at the end);
6. the same check on demand (`python -m etl.reconcile`), and with the replay feed told to
   disagree (one trade Binance counts that we never received), the mismatch it reports;
7. a summary of what landed where, and the dashboard's URL (`--serve`: it keeps serving).

Every step is the real command a user runs; rerunning the demo changes nothing it already did
(the backfill skips loaded days, the batch replaces its day).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from binance_etl.db import connect, redact, resolve_database_url, resolve_warehouse_url
from binance_etl.logs import setup_logging
from binance_etl.schema import migrate
from binance_etl.settings import Settings, load_settings
from etl import connect_server

logger = logging.getLogger("demo")
console = Console(width=120)
DEMO_DIR = Path(".local/demo")


def binance_reachable(settings: Settings) -> bool:
    try:
        response = httpx.get(f"{settings.binance_rest_url}/api/v3/ping", timeout=3.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def run(command: list[str], env: dict[str, str], expect: int = 0) -> None:
    console.print(f"[dim]$ {' '.join(command)}")
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != expect:
        raise SystemExit(f"demo: `{' '.join(command)}` exited with {result.returncode}, "
                         f"expected {expect}")


@contextlib.contextmanager
def spark_connect(settings: Settings) -> Iterator[Future[str]]:
    """The URL of a Spark Connect server for the batch, as a future: SPARK_REMOTE's, a running
    project server's, or one started now in the background (and stopped at the end)."""
    if settings.spark_remote:
        done: Future[str] = Future()
        done.set_result(settings.spark_remote)
        yield done
        return
    running = connect_server.read_state()
    if running is not None:
        done = Future()
        done.set_result(running.url)
        yield done
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-connect") as pool:
        future = pool.submit(lambda: connect_server.start(settings, port=0).url)
        try:
            yield future
        finally:
            future.exception()  # wait for the start to finish before stopping
            connect_server.stop()


@contextlib.contextmanager
def replay_feed(symbols: list[str], day: date, trades_per_day: int,
                *extra: str) -> Iterator[dict[str, str]]:
    """Generate yesterday's dump files (trades and 1m klines) and start the replay feed (with
    `extra` options); yields its URLs as settings."""
    dumps = DEMO_DIR / "dumps"
    for symbol in symbols:
        if not (dumps / "klines" / symbol / "1m" / f"{symbol}-1m-{day}.zip").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "binance_etl.replay.dumps",
                    "--dumps-dir",
                    str(dumps),
                    "--symbols",
                    symbol,
                    "--from",
                    str(day),
                    "--to",
                    str(day),
                    "--trades",
                    str(trades_per_day),
                ],
                check=True,
            )
    log = open(DEMO_DIR / "replay.log", "w")  # noqa: SIM115 - closed below
    feed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "binance_etl.replay",
            "--symbols",
            ",".join(symbols),
            "--rate",
            "400",
            "--dumps-dir",
            str(dumps),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert feed.stdout is not None
        line = feed.stdout.readline()
        urls = dict(re.findall(r"(BINANCE_\w+_URL)=(\S+)", line))
        if "BINANCE_WS_URL" not in urls:
            raise SystemExit(f"demo: the replay feed did not start; see {DEMO_DIR / 'replay.log'}")
        console.print(f"replay feed: {urls['BINANCE_WS_URL']} (log {DEMO_DIR / 'replay.log'})")
        yield urls
    finally:
        feed.terminate()
        try:
            feed.wait(timeout=10)
        except subprocess.TimeoutExpired:
            feed.kill()
        log.close()


def live_caught_up(database_url: str) -> bool:
    """Every stored trade of the live query's scope is counted in bars_1m."""
    with connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM trades WHERE trade_time >= s.since),"
            " (SELECT coalesce(sum(trade_count), 0) FROM bars_1m) FROM live_state s"
        ).fetchone()
    return row is not None and row[0] == row[1] and row[0] > 0


def stop_live(live: subprocess.Popen[bytes], database_url: str, timeout: float) -> None:
    """Let the live query count what the streamer stored, then SIGTERM it (a clean stop)."""
    deadline = time.monotonic() + timeout
    while live.poll() is None and not live_caught_up(database_url):
        if time.monotonic() > deadline:
            console.print("[yellow]live bars did not catch up in time; stopping them anyway")
            break
        time.sleep(1)
    if live.poll() is None:
        live.send_signal(signal.SIGTERM)
    if live.wait(120) != 0:
        raise SystemExit(f"demo: `python -m live` failed with exit code {live.returncode}")


def live_bars(database_url: str) -> None:
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT symbol, to_char(trade_minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),"
            " open_price, close_price, round(vwap, 8), trade_count, complete FROM bars_1m"
            " ORDER BY trade_minute DESC, symbol LIMIT 6"
        ).fetchall()
    table = Table(title="latest live minute bars (bars_1m, UTC)")
    for column in ("symbol", "minute", "open", "close", "vwap", "trades", "complete"):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def summary(settings: Settings, database_url: str, day: date) -> None:
    step("What landed where")
    raw = Table(title="raw trades in PostgreSQL (table trades)")
    for column in ("UTC day", "symbol", "trades", "first id", "last id"):
        raw.add_column(column, justify="right" if column != "symbol" else "left")
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT trade_time::date, symbol, count(*), min(trade_id), max(trade_id) "
            "FROM trades GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    for when, symbol, count, first, last in rows:
        raw.add_row(str(when), symbol, f"{count:,}", str(first), str(last))
    console.print(raw)

    lake = Path(settings.lake_uri.removeprefix("file://"))
    if "://" not in settings.lake_uri or settings.lake_uri.startswith("file://"):
        files = Table(title=f"Parquet lake {lake} for {day}")
        files.add_column("partition")
        files.add_column("files", justify="right")
        files.add_column("bytes", justify="right")
        suffix = f"year={day:%Y}/month={day:%m}/day={day:%d}"
        for table in ("dim_time", "dim_symbol", "fact_trades"):
            folder = lake / table / suffix
            parquet = list(folder.glob("*.parquet")) if folder.exists() else []
            files.add_row(
                str(folder), str(len(parquet)), f"{sum(p.stat().st_size for p in parquet):,}"
            )
        console.print(files)

    if settings.warehouse_is_redshift:
        return
    warehouse = Table(title="warehouse (schema warehouse)")
    for column in ("table", "rows for the day"):
        warehouse.add_column(column)
    with connect(resolve_warehouse_url(settings)) as conn:
        counts = {
            "dim_time": conn.execute(
                "SELECT count(*) FROM warehouse.dim_time WHERE datetime::date = %s", (day,)
            ).fetchone(),
            "dim_symbol": conn.execute("SELECT count(*) FROM warehouse.dim_symbol").fetchone(),
            "fact_trades": conn.execute(
                "SELECT count(*) FROM warehouse.fact_trades WHERE trade_date = %s", (day,)
            ).fetchone(),
        }
        for name, count in counts.items():
            warehouse.add_row(name, f"{count[0] if count else 0:,}")
        console.print(warehouse)
        facts = conn.execute(
            "SELECT symbol, to_char(trade_minute AT TIME ZONE 'UTC', 'HH24:MI'), open_price, "
            "close_price, round(vwap, 8), total_quantity, trade_count "
            "FROM warehouse.fact_trades WHERE trade_date = %s "
            "ORDER BY trade_count DESC, symbol, trade_minute LIMIT 5",
            (day,),
        )
        sample = Table(title=f"busiest minutes of {day} (warehouse.fact_trades, UTC)")
        for column in ("symbol", "minute", "open", "close", "vwap", "quantity", "trades"):
            sample.add_column(column, justify="left" if column == "symbol" else "right")
        for row in facts.fetchall():
            sample.add_row(*(str(value) for value in row))
        console.print(sample)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--stream-seconds", type=int, default=20)
    parser.add_argument(
        "--trades-per-day",
        type=int,
        default=200_000,
        help="trades per symbol in the generated dump of yesterday (replay feed)",
    )
    parser.add_argument(
        "--live-catchup-seconds", type=int, default=180,
        help="how long the live bars may take to count every stored trade after the stream",
    )
    parser.add_argument(
        "--replay", action="store_true", help="use the replay feed even if Binance answers"
    )
    parser.add_argument(
        "--serve", action="store_true",
        help="at the end, keep the dashboard serving (python -m dashboard) until Ctrl-C",
    )
    parser.add_argument("--port", type=int, default=8050, help="the dashboard's port")
    args = parser.parse_args(argv)
    setup_logging()
    settings = load_settings()
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    day = datetime.now(UTC).date() - timedelta(days=1)
    started = time.monotonic()

    step("1. PostgreSQL")
    database_url = resolve_database_url(settings)
    with connect(database_url, autocommit=True) as conn:
        migrate(conn, ahead_days=settings.partitions_ahead_days)
    console.print(f"raw store: {redact(database_url)}")
    env = dict(os.environ, DATABASE_URL=database_url)

    step("2. Market data source")
    use_binance = not args.replay and binance_reachable(settings)
    feed: contextlib.AbstractContextManager[dict[str, str]]
    if use_binance:
        console.print(f"Binance answers at {settings.binance_rest_url}: using the real exchange")
        feed = contextlib.nullcontext({})
    else:
        console.print("Binance cannot be reached: using the bundled replay feed")
        feed = replay_feed(settings.symbols, day, args.trades_per_day)
    with spark_connect(settings) as spark_remote, feed as urls:
        env.update(urls)
        step(f"3. History: yesterday ({day}) from the daily dump files")
        run(
            [
                sys.executable,
                "-m",
                "etl.backfill",
                "--symbols",
                ",".join(settings.symbols),
                "--from",
                str(day),
                "--to",
                str(day),
            ],
            env,
        )
        step(f"4. Live trades for {args.stream_seconds} s, live minute bars beside them")
        console.print("[dim]$ python -m live  (in the background)")
        live = subprocess.Popen([sys.executable, "-m", "live"], env=env)
        try:
            run([sys.executable, "stream.py", "--duration", str(args.stream_seconds)], env)
            stop_live(live, database_url, timeout=args.live_catchup_seconds)
        finally:
            if live.poll() is None:
                live.kill()
        live_bars(database_url)
        step(f"5. The daily batch for {day} through a Spark Connect server, checked against "
             "the exchange's 1m klines")
        try:
            env["SPARK_REMOTE"] = spark_remote.result()
        except connect_server.ConnectServerError as error:
            raise SystemExit(f"demo: the Spark Connect server did not start: {error}") from None
        console.print(f"SPARK_REMOTE={env['SPARK_REMOTE']} (logs in {connect_server.DEFAULT_DIR})")
        run([sys.executable, "-m", "etl.main", "--date", str(day)], env)
        step(f"6. {day} reconciled with the exchange on demand")
        run([sys.executable, "-m", "etl.reconcile", "--date", str(day)], env)
    if not use_binance:
        console.print("The replay feed again, told to count one trade nobody received "
                      "(--klines-fault trade-missing): the reconcile must name that minute.")
        with replay_feed(settings.symbols, day, args.trades_per_day, "--klines-fault",
                         "trade-missing") as urls:
            run([sys.executable, "-m", "etl.reconcile", "--date", str(day)],
                {**env, **urls}, expect=1)
    summary(settings, database_url, day)
    console.print(
        f"\n[bold green]demo finished in {time.monotonic() - started:.0f} s.[/] "
        "The local PostgreSQL keeps running (stop it with `make db-stop`)."
    )
    url = f"http://127.0.0.1:{args.port}/?day={day}"
    if not args.serve:
        console.print(f"See it: `python -m dashboard --port {args.port}`, then open {url} "
                      "(or `make demo SERVE=1` to serve it now).")
        return 0
    step("6. The dashboard")
    console.print(f"dashboard: {url} (yesterday from the warehouse; 'today (live)' for today's "
                  "bars); Ctrl-C stops it")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run([sys.executable, "-m", "dashboard", "--port", str(args.port)], env=env,
                       check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
