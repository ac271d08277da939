"""The day rule of `daily_binance_etl` as pure functions (etl.dagrules): no Airflow needed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from etl.dagrules import (
    DayRuleError,
    backfill_window,
    default_day,
    parse_day,
    scheduled_run_time,
    target_day,
    target_day_of_run,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_scheduled_run_processes_the_day_before_its_interval_end():
    # CronTriggerTimetable: zero-length interval at the run's time.
    assert target_day(utc(2025, 9, 11, 4, 0)) == date(2025, 9, 10)


def test_a_full_day_interval_gives_the_same_day():
    # Under CronDataIntervalTimetable the interval is [09-10 04:00, 09-11 04:00): same answer.
    assert default_day(utc(2025, 9, 11, 4, 0)) == date(2025, 9, 10)


@pytest.mark.parametrize("hour", [0, 4, 13, 23])
def test_manual_run_without_logical_date_uses_run_after(hour):
    assert target_day(None, run_after=utc(2025, 9, 11, hour, 30)) == date(2025, 9, 10)


def test_interval_end_wins_over_run_after():
    # A backfilled run happens long after its interval; the interval decides.
    assert target_day(utc(2025, 1, 2, 4), run_after=utc(2026, 11, 26, 12)) == date(2025, 1, 1)


def test_interval_end_in_another_timezone_is_read_in_utc():
    tz = timezone(timedelta(hours=5))
    # 02:00 at +05:00 is 21:00 UTC the day before.
    assert target_day(datetime(2025, 9, 11, 2, 0, tzinfo=tz)) == date(2025, 9, 9)


def test_naive_datetimes_are_refused():
    with pytest.raises(DayRuleError, match="timezone-aware"):
        target_day(datetime(2025, 9, 11, 4, 0))


def test_no_anchor_is_refused():
    with pytest.raises(DayRuleError, match="neither"):
        target_day(None, None)


def test_conf_date_overrides_the_interval():
    assert target_day(utc(2025, 9, 11, 4), conf={"date": "2025-08-01"}) == date(2025, 8, 1)


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_empty_conf_date_falls_back_to_the_rule(empty):
    assert target_day(utc(2025, 9, 11, 4), conf={"date": empty}) == date(2025, 9, 10)


def test_conf_date_may_be_the_latest_finished_day():
    assert target_day(None, utc(2025, 9, 11, 0, 5), {"date": "2025-09-10"}) == date(2025, 9, 10)


@pytest.mark.parametrize("day", ["2025-09-11", "2025-09-12", "2099-01-01"])
def test_conf_date_that_has_not_ended_is_refused(day):
    with pytest.raises(DayRuleError, match="has not ended"):
        target_day(None, utc(2025, 9, 11, 23, 59), {"date": day})


@pytest.mark.parametrize(
    "bad", ["2025-9-1", "2025-02-30", "20250901", "tomorrow", 20250901, "2025-09-01T00:00"]
)
def test_malformed_conf_dates_are_refused(bad):
    with pytest.raises(DayRuleError):
        target_day(utc(2025, 9, 11, 4), conf={"date": bad})


def test_parse_day_refuses_datetimes_and_accepts_dates():
    assert parse_day(date(2025, 1, 2)) == date(2025, 1, 2)
    assert parse_day(" 2025-01-02 ") == date(2025, 1, 2)
    with pytest.raises(DayRuleError, match="datetime"):
        parse_day(utc(2025, 1, 2))


def test_run_params_win_over_conf():
    run = SimpleNamespace(
        data_interval_end=utc(2025, 9, 11, 4), run_after=utc(2025, 9, 11, 4),
        conf={"date": "2025-08-01"},
    )
    assert target_day_of_run(run, {"date": "2025-08-02"}) == date(2025, 8, 2)
    assert target_day_of_run(run, {"date": None}) == date(2025, 8, 1)
    assert target_day_of_run(run) == date(2025, 8, 1)


def test_run_without_conf_or_interval():
    run = SimpleNamespace(data_interval_end=None, run_after=utc(2025, 3, 1, 9), conf=None)
    assert target_day_of_run(run, {}) == date(2025, 2, 28)


def test_scheduled_run_time_is_four_utc_the_next_day():
    assert scheduled_run_time(date(2024, 12, 31)) == utc(2025, 1, 1, 4, 0)
    assert target_day(scheduled_run_time(date(2024, 2, 29))) == date(2024, 2, 29)


def test_backfill_window_spans_the_run_times_of_the_days():
    window = backfill_window(date(2025, 2, 10), date(2025, 2, 12))
    assert window.from_time == utc(2025, 2, 11, 4)
    assert window.to_time == utc(2025, 2, 13, 4)
    assert window.cli_args() == [
        "--from-date", "2025-02-11T04:00:00+00:00", "--to-date", "2025-02-13T04:00:00+00:00",
    ]
    with pytest.raises(DayRuleError, match="empty range"):
        backfill_window(date(2025, 2, 12), date(2025, 2, 10))
