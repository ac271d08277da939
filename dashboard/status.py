"""The Days and Health views' data: what the project already records, shaped for display.

Days: raw completeness (trade-id continuity, the batch gate's own totals query), whether the
batch ran (its JSON quality report in the lake: published, or only staged when the gate
failed), the verdict with every check of the report as it stands (new checks appear without
code changes), and the fact rows in the lake (Parquet footers) and in the warehouse.

Health: per symbol, from the raw `trades` table the streamer writes: the age of the last
stored trade, the recent rate, and the lag `ingested_at - trade_time`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from dashboard.queries import Database, health, raw_day_totals, raw_days, warehouse_days
from etl.lake import Lake

logger = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(seconds=60)
HEALTH_SAMPLE = 2000
CACHE_SECONDS = 30.0


@dataclass
class DayStatus:
    day: date
    raw_complete: bool | None  # None: no trades stored for the day
    raw_detail: str
    batch: str
    passed: bool | None  # None: no quality report
    checks: list[dict[str, Any]] = field(default_factory=list)
    lake_rows: int | None = None
    warehouse_rows: int | None = None


def raw_summary(day: date, raw: Database) -> tuple[bool | None, str]:
    totals = raw_day_totals(raw, day)
    if not totals:
        return None, "no trades stored"
    gaps = {symbol: t.missing_ids for symbol, t in totals.items() if t.missing_ids}
    trades = sum(t.trade_count for t in totals.values())
    if gaps:
        listed = ", ".join(f"{symbol}: {n:,} missing" for symbol, n in sorted(gaps.items()))
        return False, f"{trades:,} trades; trade ids missing ({listed})"
    return True, f"{trades:,} trades, ids continuous for {', '.join(sorted(totals))}"


def lake_fact_rows(lake: Lake, day: date) -> int | None:
    files = lake.partition_files("fact_trades", day)
    if not files:
        return None
    return sum(pq.ParquetFile(io.BytesIO(lake.read_bytes(name))).metadata.num_rows
               for name, _ in files)


def batch_summary(lake: Lake, day: date) -> tuple[str, bool | None, list[dict[str, Any]]]:
    report = lake.read_published_report(day)
    where = "published"
    if report is None:
        report = lake.read_staged_report(day)
        where = "staged, not published"
    if report is None:
        return "not run", None, []
    checks = [
        {"name": str(item.get("name", "?")), "passed": bool(item.get("passed")),
         "detail": str(item.get("detail", ""))}
        for item in report.get("checks", [])
        if isinstance(item, dict)
    ]
    passed = bool(report.get("passed"))
    ran = f"ran ({where})" if passed else f"ran, gate failed ({where})"
    checked_at = report.get("checked_at")
    if checked_at:
        ran += f", checked {str(checked_at)[:19].replace('T', ' ')} UTC"
    return ran, passed, checks


class DaysView:
    """The last N days' status, cached briefly (a raw day's totals scan its partition)."""

    def __init__(self, raw: Database, warehouse: Database, lake: Lake, days: int) -> None:
        self.raw, self.warehouse, self.lake, self.days = raw, warehouse, lake, days
        self._cache: dict[date, tuple[float, DayStatus]] = {}
        self._lock = threading.Lock()

    def statuses(self, today: date | None = None) -> list[DayStatus]:
        today = today or datetime.now(UTC).date()
        loaded = warehouse_days(self.warehouse)
        candidates = set(raw_days(self.raw, today, self.days)) | set(list(loaded)[: self.days])
        return [self._status(day, loaded.get(day)) for day in sorted(candidates, reverse=True)
                ][: self.days]

    def _status(self, day: date, warehouse_rows: int | None) -> DayStatus:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(day)
        if cached and cached[0] > now and cached[1].warehouse_rows == warehouse_rows:
            return cached[1]
        raw_complete, raw_detail = raw_summary(day, self.raw)
        batch, passed, checks = batch_summary(self.lake, day)
        status = DayStatus(day, raw_complete, raw_detail, batch, passed, checks,
                           lake_fact_rows(self.lake, day), warehouse_rows)
        with self._lock:
            self._cache[day] = (now + CACHE_SECONDS, status)
        return status


@dataclass(frozen=True)
class SymbolHealth:
    symbol: str
    last_trade: datetime | None
    age_seconds: float | None
    rate_per_second: float
    lag_p50_seconds: float | None
    lag_max_seconds: float | None
    stale: bool


def symbol_health(raw: Database, symbols: list[str], stale_seconds: float,
                  now: datetime | None = None) -> list[SymbolHealth]:
    now = now or datetime.now(UTC)
    rows = health(raw, symbols, now - HEALTH_WINDOW, HEALTH_SAMPLE)
    result = []
    for row in rows:
        age = (now - row.last_trade).total_seconds() if row.last_trade else None
        if row.sampled >= HEALTH_SAMPLE and row.first_time and row.last_time \
                and row.last_time > row.first_time:
            # The sample is full: it spans less than the window; rate over its own span.
            rate = (row.sampled - 1) / (row.last_time - row.first_time).total_seconds()
        else:
            rate = row.sampled / HEALTH_WINDOW.total_seconds()
        result.append(SymbolHealth(
            row.symbol, row.last_trade, age, rate,
            float(row.lag_p50) if row.lag_p50 is not None else None,
            float(row.lag_max) if row.lag_max is not None else None,
            stale=age is None or age > stale_seconds,
        ))
    return result
