"""`python -m etl.main --date YYYY-MM-DD [--allow-empty]` — the daily batch for one UTC day.

Runs stage_day → check_quality → publish_lake → load_warehouse with a progress line per stage
and a summary table at the end. Exit codes: 0 done, 1 the quality gate failed (nothing was
published), 2 bad input or configuration, 3 the raw store or the Spark Connect server
(SPARK_REMOTE) is unreachable, 4 another failure.

With spark-submit, from an environment where the project is installed (the driver comes
from --packages there):

    spark-submit --master spark://127.0.0.1:7077 \\
        --packages org.postgresql:postgresql:42.7.8 \\
        "$(python -c 'import etl.main as m; print(m.__file__)')" --date 2025-09-10
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from binance_etl.localpg import LocalPostgresError
from binance_etl.logs import setup_logging
from binance_etl.settings import Settings, SettingsError, load_settings
from etl.pipeline import (
    QualityGateError,
    RawStoreUnreachable,
    check_quality,
    check_raw_store,
    load_warehouse,
    publish_lake,
    stage_day,
)
from etl.spark import SparkConnectUnreachable, check_remote
from etl.utils import DayError, check_not_future, parse_day

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What one run did; `to_dict()` is JSON-serialisable."""

    day: str
    rows_read: int = 0
    symbols: int = 0
    minutes: int = 0
    files: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    warehouse: dict[str, Any] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return round(sum(self.seconds.values()), 3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_seconds": self.total_seconds}

    def table(self) -> Table:
        table = Table(title=f"binance-etl day {self.day}", show_header=True)
        table.add_column("what")
        table.add_column("value", justify="right")
        table.add_row("rows read", f"{self.rows_read:,}")
        table.add_row("symbols", str(self.symbols))
        table.add_row("symbol-minutes (fact rows)", f"{self.minutes:,}")
        table.add_row("files written", str(self.files))
        table.add_row("bytes written", f"{self.bytes:,}")
        for stage, seconds in self.seconds.items():
            table.add_row(f"seconds: {stage}", f"{seconds:.2f}")
        table.add_row("seconds: total", f"{self.total_seconds:.2f}")
        return table


def run_day(day: date, settings: Settings | None = None, *, allow_empty: bool = False,
            console: Console | None = None) -> RunSummary:
    """The whole batch for one day; raises on any failure (nothing published on a failed gate)."""
    settings = settings or load_settings()
    check_not_future(day)
    check_raw_store(settings)  # before any progress output: one clear line if unreachable
    if settings.spark_remote:
        check_remote(settings.spark_remote)
    console = console or Console(stderr=True)
    summary = RunSummary(day=day.isoformat())
    stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("stage (extract, transform, quality gate)",
         lambda: stage_day(day, settings, allow_empty=allow_empty)),
        ("check quality", lambda: check_quality(day, settings)),
        ("publish lake", lambda: publish_lake(day, settings)),
        ("load warehouse", lambda: load_warehouse(day, settings)),
    ]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for name, stage in stages:
            task = progress.add_task(name, total=1)
            started = time.perf_counter()
            result = stage()
            elapsed = time.perf_counter() - started
            progress.update(task, completed=1, description=f"{name} ✓")
            if name.startswith("stage"):
                summary.rows_read = int(result["rows_read"])
                summary.symbols = int(result["symbols"])
                summary.minutes = int(result["minutes"])
                summary.files, summary.bytes = int(result["files"]), int(result["bytes"])
                for part, value in result["seconds"].items():
                    summary.seconds[part] = float(value)
            else:
                summary.seconds[name.replace(" ", "_")] = round(elapsed, 3)
            if name == "load warehouse":
                summary.warehouse = result["tables"]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.main", description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    parser.add_argument("--allow-empty", action="store_true",
                        help="a day without trades passes the gate (publishes empty facts)")
    args = parser.parse_args(argv)
    setup_logging()
    err = Console(stderr=True)
    session_before = _active_session()
    try:
        day = parse_day(args.date)
        check_not_future(day)
        settings = load_settings()
        summary = run_day(day, settings, allow_empty=args.allow_empty, console=err)
    except (DayError, SettingsError) as error:
        _say(err, f"error: {getattr(error, 'message', error)}")
        return 2
    except QualityGateError as error:
        _say(err, f"error: {error} (nothing was published)")
        return 1
    except (RawStoreUnreachable, SparkConnectUnreachable, LocalPostgresError) as error:
        _say(err, f"error: {error}")
        return 3
    except Exception as error:
        logger.exception("the batch failed")
        _say(err, f"error: {type(error).__name__}: {error}")
        return 4
    finally:
        if session_before is None:
            _stop_session()
    Console().print(summary.table())
    return 0


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _active_session() -> Any:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _stop_session() -> None:
    session = _active_session()
    if session is not None:
        session.stop()


if __name__ == "__main__":
    sys.exit(main())
