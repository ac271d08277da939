"""`python -m etl.reconcile`'s input errors: one line, exit 2, nothing touched."""

from __future__ import annotations

import pytest

from etl.reconcile import main


def test_live_compares_today_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--live", "--date", "2020-01-01"]) == 2
    assert "--live compares today" in capsys.readouterr().err


def test_a_day_is_required_without_live(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "--date is required" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["2025-13-01", "yesterday", "2999-01-01"])
def test_bad_or_future_day(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--date", bad]) == 2
    assert capsys.readouterr().err.startswith("error: ")
