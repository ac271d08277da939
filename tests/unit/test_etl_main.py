"""The command line: one clear line and a non-zero exit for bad input or an unreachable store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binance_etl.localpg import free_port
from etl.main import RunSummary, main


def test_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--date", "2025-13-01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --date must be a UTC day as YYYY-MM-DD (got '2025-13-01')"]


def test_future_day(capsys: pytest.CaptureFixture[str]) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert main(["--date", tomorrow]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "is in the future" in err[0]


def test_unreachable_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("DATABASE_URL", f"postgresql://etl:secret@127.0.0.1:{port}/raw")
    assert main(["--date", "2025-09-10"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: cannot reach the raw store postgresql://etl:***@127.0.0.1:{port}")
    assert "secret" not in err[0]


def test_bad_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_MASTER", "yarn")
    assert main(["--date", "2025-09-10"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: SPARK_MASTER")


def test_summary_is_json_ready() -> None:
    summary = RunSummary(day="2025-09-10", rows_read=5, seconds={"a": 1.25, "b": 2.0})
    assert summary.to_dict()["total_seconds"] == 3.25
    assert summary.table().row_count == 8
