"""Which UTC day a run of the DAG `daily_binance_etl` processes: pure functions, no Airflow.

The rule (docs/orchestration.md): a run processes the UTC day that ended before its data
interval end, i.e. `data_interval_end (UTC) - 1 day`. Airflow 3 turns a cron schedule into a
`CronTriggerTimetable`, whose data interval has zero length (start = end = the run's time), and a
manually triggered run may have no logical date and no data interval at all; then the run's
`run_after` (when it was asked to run) stands in for the interval end. So the scheduled run of
2025-09-11 04:00 UTC, a backfilled run for that same time and a UI trigger on 2025-09-11 all
process 2025-09-10. A manual run may name its day instead: conf `{"date": "YYYY-MM-DD"}`, which
must be a real calendar day that has already ended when the run starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

DAG_ID = "daily_binance_etl"
# 04:00 UTC: four hours after the day ends, time for late trades and the gap fill.
SCHEDULE = "0 4 * * *"
RUN_TIME = time(4, 0, tzinfo=UTC)
CONF_DATE_KEY = "date"

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DayRuleError(ValueError):
    """A run whose day cannot be decided: a malformed or not yet ended conf date, no anchor."""


class RunLike(Protocol):
    """What the rule needs from a DAG run (Airflow's task-side `DagRun` model has these)."""

    @property
    def data_interval_end(self) -> datetime | None: ...

    @property
    def run_after(self) -> datetime | None: ...

    @property
    def conf(self) -> Mapping[str, Any] | None: ...


def parse_day(value: object) -> date:
    """`"2025-09-10"` -> date(2025, 9, 10); anything else raises DayRuleError naming the value."""
    if isinstance(value, datetime):  # a datetime is a date subclass: refuse the ambiguity
        raise DayRuleError(f"expected a day as YYYY-MM-DD, got the datetime {value.isoformat()}")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY_RE.match(value.strip()):
        raise DayRuleError(f"expected a day as YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError as error:
        raise DayRuleError(f"{value!r} is not a calendar day: {error}") from None


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DayRuleError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def default_day(data_interval_end: datetime | None, run_after: datetime | None = None) -> date:
    """The UTC day before the data interval end (or before `run_after` for interval-less runs)."""
    if data_interval_end is not None:
        anchor = _utc(data_interval_end, "data_interval_end")
    elif run_after is not None:
        anchor = _utc(run_after, "run_after")
    else:
        raise DayRuleError("the run has neither a data interval nor a run_after time")
    return anchor.date() - timedelta(days=1)


def target_day(
    data_interval_end: datetime | None,
    run_after: datetime | None = None,
    conf: Mapping[str, Any] | None = None,
) -> date:
    """The UTC day a run processes: conf's `date` when given, else the day before the interval end.

    A conf day must already have ended when the run starts (no later than the default day), so a
    manual run can never process a day that is still receiving trades.
    """
    latest = default_day(data_interval_end, run_after)
    requested = (conf or {}).get(CONF_DATE_KEY)
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        return latest
    day = parse_day(requested)
    if day > latest:
        raise DayRuleError(
            f"conf date {day.isoformat()} has not ended before this run; "
            f"the latest day this run can process is {latest.isoformat()}"
        )
    return day


def target_day_of_run(dag_run: RunLike, params: Mapping[str, Any] | None = None) -> date:
    """`target_day` for an Airflow DAG run; `params` (conf merged with defaults) wins over conf."""
    conf: dict[str, Any] = dict(dag_run.conf or {})
    if params is not None and params.get(CONF_DATE_KEY) is not None:
        conf[CONF_DATE_KEY] = params[CONF_DATE_KEY]
    return target_day(dag_run.data_interval_end, dag_run.run_after, conf)


def scheduled_run_time(day: date) -> datetime:
    """When the scheduled run that processes `day` happens: 04:00 UTC the next day."""
    return datetime.combine(day + timedelta(days=1), RUN_TIME)


@dataclass(frozen=True)
class BackfillWindow:
    """The `airflow backfill create` window (both ends inclusive) that covers a range of days."""

    from_time: datetime
    to_time: datetime

    def cli_args(self) -> list[str]:
        return ["--from-date", self.from_time.isoformat(), "--to-date", self.to_time.isoformat()]


def backfill_window(first_day: date, last_day: date) -> BackfillWindow:
    """The window whose runs process exactly the days first..last.

    Airflow's backfill creates one run per schedule time inside [from, to], both inclusive; the
    run that processes day D is the one at D+1 04:00 UTC, so the window spans those run times.
    (With bare dates, which mean midnight, `--to-date` must be the day after last+1.)
    """
    if last_day < first_day:
        raise DayRuleError(f"empty range: {first_day.isoformat()} .. {last_day.isoformat()}")
    return BackfillWindow(scheduled_run_time(first_day), scheduled_run_time(last_day))
