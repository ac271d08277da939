"""The exchange check on real components: the replay feed serves a day's trade dumps and the 1m
klines dumps made from the same trades, the backfill loads the trades into PostgreSQL, and the
real batch (Spark, the quality gate, the lake, the warehouse) compares its facts with the klines.

One day is seeded per test; the raw table is then broken and repaired in place, so several
scenarios share it. Most policy cases call the check on facts built once by Spark.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

from binance_etl.localpg import free_port
from binance_etl.replay.dumps import generate_trades, klines_path, write_dump, write_klines_dump
from binance_etl.replay.market import Trade
from binance_etl.replay.testing import FeedHandle, running_feed
from binance_etl.replay.tradefile import write_trade_file
from binance_etl.schema import ensure_partitions
from binance_etl.settings import Settings, load_settings
from etl.backfill import BackfillRequest, run_backfill
from etl.exchange import check_day
from etl.extract import read_day
from etl.klines_source import fetch_day_klines
from etl.main import main as batch_main
from etl.main import run_day
from etl.pipeline import stage_day
from etl.reconcile import main as reconcile_main
from etl.transform import build_fact_trades

pytestmark = pytest.mark.integration

DAY = date(2025, 3, 4)  # microsecond dumps, as Binance's from 2025 on
SYMBOLS = {"BTCUSDT": 7_000_000, "ETHUSDT": 3_000_000}  # symbol: first trade id
PER_SYMBOL = 3000
START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)


def minute(text: str) -> str:
    return f"{DAY}T{text}Z"


@dataclass(frozen=True)
class ExchangeFeed:
    feed: FeedHandle
    dumps: Path  # the folder the feed serves its dumps from

    @property
    def data_url(self) -> str:
        return self.feed.data_url


@pytest.fixture(scope="module")
def exchange_feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeFeed]:
    """A paused feed serving the day's trade dumps and klines dumps (consistent)."""
    dumps = tmp_path_factory.mktemp("exchange-dumps")
    for symbol, first_id in SYMBOLS.items():
        trades = list(generate_trades(symbol, DAY, PER_SYMBOL, first_id=first_id))
        write_dump(dumps, symbol, DAY, trades)
        write_klines_dump(dumps, symbol, DAY, trades)
    with running_feed(symbols=list(SYMBOLS), dumps_dir=str(dumps), start_paused=True) as feed:
        yield ExchangeFeed(feed, dumps)


@pytest.fixture(autouse=True)
def leave_the_raw_store_empty(pg_url: str) -> Iterator[None]:
    """The session's database is shared: no trade or bar of these tests outlives them (a later
    test would see a stream that passed its day's end)."""
    yield
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE trades, bars_1m")


def seed(conn: psycopg.Connection, pg_url: str, feed: ExchangeFeed) -> None:
    """The day's raw trades, loaded from the feed's dumps by the real backfill."""
    conn.execute("TRUNCATE trades")
    outcomes = run_backfill(pg_url, feed.data_url, BackfillRequest(list(SYMBOLS), DAY, DAY,
                                                                    force=True),
                            console=Console(quiet=True))
    assert [outcome.inserted for outcome in outcomes] == [PER_SYMBOL] * len(SYMBOLS)


def settings_for(pg_url: str, lake: Path, feed_url: str, **extra: Any) -> Settings:
    return load_settings(database_url=pg_url, warehouse_url=pg_url, lake_uri=str(lake),
                         symbols=list(SYMBOLS), spark_master="local[2]",
                         binance_data_url=feed_url, binance_rest_url=feed_url, **extra)


def set_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for name in ("database_url", "warehouse_url", "lake_uri", "spark_master",
                 "binance_data_url", "binance_rest_url", "exchange_check"):
        monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))


def staged_report(lake: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        (lake / "_staging" / DAY.isoformat() / "quality.json").read_text())
    return report


def verdicts(report: dict[str, Any]) -> dict[str, bool]:
    return {check["name"]: check["passed"] for check in report["checks"]}


def published(lake: Path) -> list[Path]:
    folder = lake / "fact_trades" / f"year={DAY.year}" / f"month={DAY.month:02d}" / \
        f"day={DAY.day:02d}"
    return sorted(folder.glob("*.parquet"))


def warehouse_rows(conn: psycopg.Connection) -> int:
    exists = conn.execute("SELECT to_regclass('warehouse.fact_trades') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return 0
    row = conn.execute("SELECT count(*) FROM warehouse.fact_trades WHERE trade_date = %s",
                       (DAY,)).fetchone()
    return int(row[0]) if row else 0


def first(report: dict[str, Any], column: str) -> dict[str, Any]:
    entry: dict[str, Any] = report["exchange"]["mismatches"][column]["first"][0]
    return entry


def test_changed_deleted_and_extra_trades_fail_the_gate_then_the_repaired_day_passes(
    spark: object, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path,
    exchange_feed: ExchangeFeed, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(pg_conn, pg_url, exchange_feed)
    lake = tmp_path / "lake"
    settings = settings_for(pg_url, lake, exchange_feed.data_url)
    set_env(monkeypatch, settings)

    # 1. A stored trade with a wrong price: the batch fails, naming the minute and column.
    row = pg_conn.execute("SELECT trade_id, price, date_trunc('minute', trade_time) FROM trades "
                          "WHERE symbol = 'BTCUSDT' AND trade_id = %s", (7_001_500,)).fetchone()
    assert row is not None
    trade_id, price, bad_minute = row
    pg_conn.execute("UPDATE trades SET price = 1 WHERE symbol = 'BTCUSDT' AND trade_id = %s",
                    (trade_id,))
    assert batch_main(["--date", DAY.isoformat()]) == 1
    assert "exchange" in capsys.readouterr().err
    report = staged_report(lake)
    assert verdicts(report) == {**{name: True for name in verdicts(report)}, "exchange": False}
    low = first(report, "low")
    assert low["symbol"] == "BTCUSDT"
    assert low["minute"] == bad_minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    assert Decimal(low["ours"]) == 1
    assert "trades" not in report["exchange"]["mismatches"]
    assert report["exchange"]["symbols"]["ETHUSDT"]["minutes_mismatched"] == 0
    assert report["exchange"]["symbols"]["BTCUSDT"]["source"] == "dump (µs)"
    assert published(lake) == []
    assert warehouse_rows(pg_conn) == 0
    pg_conn.execute("UPDATE trades SET price = %s WHERE symbol = 'BTCUSDT' AND trade_id = %s",
                    (price, trade_id))

    # 2. The day's first trade lost (trade-id continuity cannot see it: it is at the edge), and
    # a trade that should not be there (the next id, in the day's last minute): one stage run.
    pg_conn.execute("DELETE FROM trades WHERE symbol = 'ETHUSDT' AND trade_id = 3000000")
    pg_conn.execute(
        "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, is_buyer_maker) "
        "VALUES ('BTCUSDT', %s, 60000, 0.5, %s, false)",
        (7_000_000 + PER_SYMBOL, START + timedelta(days=1, microseconds=-1)))
    assert stage_day(DAY, settings)["passed"] is False
    report = staged_report(lake)
    assert verdicts(report)["trade_id_continuity"] is True
    assert verdicts(report)["reconciliation"] is True
    assert verdicts(report)["exchange"] is False
    counts = {(item["symbol"], item["minute"]): (int(item["ours"]), int(item["theirs"]))
              for item in report["exchange"]["mismatches"]["trades"]["first"]}
    assert set(counts) == {("ETHUSDT", minute("00:00")), ("BTCUSDT", minute("23:59"))}
    ours, theirs = counts["ETHUSDT", minute("00:00")]
    assert theirs == ours + 1  # Binance counts one more: a lost trade
    ours, theirs = counts["BTCUSDT", minute("23:59")]
    assert ours == theirs + 1  # we hold one more: an extra trade
    assert report["exchange"]["symbols"]["ETHUSDT"]["lost_trades"] == 1
    assert report["exchange"]["symbols"]["BTCUSDT"]["extra_trades"] == 1
    detail = next(c for c in report["checks"] if c["name"] == "exchange")["detail"]
    assert "1 lost trade(s), 1 extra trade(s)" in detail
    assert published(lake) == []

    # 3. Repaired (the day loaded again from the dumps, the extra trade removed): the rerun
    # passes and publishes; the on-demand reconcile agrees.
    seed(pg_conn, pg_url, exchange_feed)
    summary = run_day(DAY, settings, console=Console(quiet=True))
    assert summary.rows_read == PER_SYMBOL * len(SYMBOLS)
    report = json.loads((lake / "quality_reports" / f"year={DAY.year}" / f"month={DAY.month:02d}"
                         / f"day={DAY.day:02d}" / "quality.json").read_text())
    assert verdicts(report)["exchange"] is True
    assert report["exchange"]["status"] == "passed"
    assert report["exchange"]["symbols"]["BTCUSDT"]["minutes_compared"] == 1440
    assert len(published(lake)) == 1
    capsys.readouterr()
    assert reconcile_main(["--date", DAY.isoformat()]) == 0
    assert "equal Binance's klines" in capsys.readouterr().out

    # The warehouse disagreeing with the exchange: reconcile names the minute and column.
    pg_conn.execute("UPDATE warehouse.fact_trades SET close_price = close_price + 0.01 "
                    "WHERE symbol = 'ETHUSDT' AND trade_minute = %s",
                    (START + timedelta(minutes=5),))
    assert reconcile_main(["--date", DAY.isoformat()]) == 1
    out = capsys.readouterr().out
    assert "close" in out
    assert "ETHUSDT" in out
    assert minute("00:05") in out


def test_policies_when_klines_disagree_or_cannot_be_had(
    spark: Any, pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path,
    exchange_feed: ExchangeFeed,
) -> None:
    seed(pg_conn, pg_url, exchange_feed)
    facts = build_fact_trades(read_day(spark, pg_url, DAY), DAY).toArrow()
    symbols = list(SYMBOLS)
    dead = f"http://127.0.0.1:{free_port()}"

    # Offline: every policy skips, says why, and the gate goes on.
    offline = fetch_day_klines(dead, dead, symbols, DAY)
    assert sorted(offline.unavailable) == symbols
    assert "unreachable" in offline.unavailable["BTCUSDT"]
    for policy in ("fail", "warn"):
        entry = check_day(facts, offline, policy)
        assert (entry["passed"], entry["status"]) == (True, "skipped")
        assert "BTCUSDT: dump unreachable" in entry["detail"]
    off = check_day(facts, None, "off")
    assert (off["passed"], off["status"]) == (True, "off")

    # One kline off in Binance's dump: fail fails, warn reports and passes.
    folder = exchange_feed.dumps
    good = klines_path(folder, "BTCUSDT", DAY).read_bytes()
    good_sum = klines_path(folder, "BTCUSDT", DAY).with_suffix(".zip.CHECKSUM").read_bytes()
    write_klines_dump(folder, "BTCUSDT", DAY,
                      generate_trades("BTCUSDT", DAY, PER_SYMBOL, first_id=7_000_000),
                      fault="kline-off")
    try:
        off_by_one = fetch_day_klines(exchange_feed.data_url, exchange_feed.data_url, symbols,
                                      DAY)
        failed = check_day(facts, off_by_one, "fail")
        assert (failed["passed"], failed["status"]) == (False, "failed")
        close = failed["report"]["mismatches"]["close"]
        assert close["total"] == 1
        assert close["first"][0]["symbol"] == "BTCUSDT"
        assert Decimal(close["first"][0]["theirs"]) - Decimal(close["first"][0]["ours"]) == \
            Decimal("1E-8")
        warned = check_day(facts, off_by_one, "warn")
        assert (warned["passed"], warned["status"]) == (True, "warned")

        # 404 for a day not published, and nothing on REST for it: that symbol is skipped.
        klines_path(folder, "ETHUSDT", DAY).rename(tmp_path / "eth.zip")
        partial = fetch_day_klines(exchange_feed.data_url, exchange_feed.data_url, symbols, DAY)
        assert sorted(partial.symbols) == ["BTCUSDT"]
        assert "not published" in partial.unavailable["ETHUSDT"]
        assert "REST returned 0 of 1440 minutes" in partial.unavailable["ETHUSDT"]
        (tmp_path / "eth.zip").rename(klines_path(folder, "ETHUSDT", DAY))

        # The whole batch with EXCHANGE_CHECK=warn publishes the day despite the mismatch.
        lake = tmp_path / "lake-warn"
        warn = settings_for(pg_url, lake, exchange_feed.data_url, exchange_check="warn")
        assert stage_day(DAY, warn, spark=spark)["passed"] is True
        report = staged_report(lake)
        assert report["exchange"]["status"] == "warned"
        assert report["exchange"]["mismatches"]["close"]["total"] == 1
    finally:
        klines_path(folder, "BTCUSDT", DAY).write_bytes(good)
        klines_path(folder, "BTCUSDT", DAY).with_suffix(".zip.CHECKSUM").write_bytes(good_sum)

    # The whole batch offline with EXCHANGE_CHECK=fail: skipped, and the day is published.
    lake = tmp_path / "lake-offline"
    summary = run_day(DAY, settings_for(pg_url, lake, dead), console=Console(quiet=True))
    assert summary.files == 3
    report = json.loads((lake / "quality_reports" / f"year={DAY.year}" / f"month={DAY.month:02d}"
                         / f"day={DAY.day:02d}" / "quality.json").read_text())
    assert report["passed"] is True
    assert report["exchange"]["status"] == "skipped"
    assert sorted(report["exchange"]["skipped"]) == symbols


def recorded_minutes(now: datetime) -> tuple[datetime, datetime]:
    """Minutes of today that have ended: [start, end) of up to six whole minutes."""
    end = now.replace(second=0, microsecond=0)
    start = max(end - timedelta(minutes=6), end.replace(hour=0, minute=0))
    return start, end


def test_reconcile_live_bars_against_rest_klines(
    pg_conn: psycopg.Connection, pg_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    start, end = recorded_minutes(now)
    if start >= end:  # the first minute of a UTC day: no minute of today has ended yet
        start, end = recorded_minutes(now + timedelta(minutes=1))
    span_ms = int((end - start).total_seconds() * 1000)
    begin_ms = int(start.timestamp() * 1000)
    trades = [Trade("BTCUSDT", 500 + index, Decimal("95000.01") + index % 7,
                    Decimal("0.00100000") * (1 + index % 5),
                    begin_ms + index * span_ms // 400, index % 3 == 0)
              for index in range(400)]
    trade_file = tmp_path / "market.csv"
    write_trade_file(trade_file, trades)
    pg_conn.execute("TRUNCATE bars_1m")
    ensure_partitions(pg_conn, [start.date()])
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.cursor() as cursor, \
            cursor.copy("COPY trades (symbol, trade_id, price, quantity, trade_time, "
                        "is_buyer_maker) FROM STDIN") as copy:
        for trade in trades:
            copy.write_row((trade.symbol, trade.trade_id, trade.price, trade.quantity,
                            trade.trade_time, trade.is_buyer_maker))
    # The bars as PostgreSQL computes them from the stored trades, all final.
    pg_conn.execute("""
        INSERT INTO bars_1m (symbol, trade_minute, min_price, max_price, avg_price,
            total_quantity, total_trade_value, trade_count, open_price, close_price, vwap,
            taker_buy_quantity, complete)
        SELECT symbol, date_trunc('minute', trade_time), min(price), max(price),
               round(avg(price), 12), sum(quantity), sum(price * quantity), count(*),
               (array_agg(price ORDER BY trade_time, trade_id))[1],
               (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1],
               round(sum(price * quantity) / sum(quantity), 12),
               coalesce(sum(quantity) FILTER (WHERE NOT is_buyer_maker), 0), true
        FROM trades GROUP BY 1, 2""")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SYMBOLS", "BTCUSDT")
    for fault, code in ((None, 0), ("trade-missing", 1)):
        options: dict[str, Any] = {"symbols": ["BTCUSDT"], "trade_file": str(trade_file),
                                   "rate": 5000, "klines_fault": fault}
        with running_feed(**options) as feed:
            feed.wait_produced("BTCUSDT", len(trades))
            monkeypatch.setenv("BINANCE_REST_URL", feed.rest_url)
            capsys.readouterr()
            assert reconcile_main(["--live"]) == code
            out = capsys.readouterr().out
        if fault:
            assert "trades" in out
            assert start.strftime("%Y-%m-%dT%H:%MZ") in out
            assert "1 lost trade(s)" in out
        else:
            minutes = (end - start) // timedelta(minutes=1)
            assert f"{minutes} minute(s) of 1 symbol(s) equal Binance's klines" in out
