"""Argument validation of `python -m etl.backfill`: one clear line for each mistake."""

from __future__ import annotations

import socket
from datetime import date

import pytest

from etl import backfill
from etl.backfill import BackfillRequest, DayOutcome, summary_table, validate

TODAY = date(2025, 9, 20)


def test_valid_request_normalises_symbols_and_lists_days() -> None:
    request = validate("btcusdt, ETHUSDT,btcusdt", ["XRPUSDT"], "2025-09-01", "2025-09-03", TODAY)
    assert request == BackfillRequest(["BTCUSDT", "ETHUSDT"], date(2025, 9, 1), date(2025, 9, 3))
    assert list(request.days()) == [date(2025, 9, 1), date(2025, 9, 2), date(2025, 9, 3)]


def test_symbols_default_to_settings() -> None:
    request = validate(None, ["BTCUSDT", "SOLUSDT"], "2025-09-20", "2025-09-20", TODAY)
    assert request.symbols == ["BTCUSDT", "SOLUSDT"]
    assert list(request.days()) == [TODAY]  # today is allowed (its file may not exist yet)


@pytest.mark.parametrize(("symbols", "first", "last", "message"), [
    ("BTCUSDT", "2025-13-01", "2025-09-02", "--from '2025-13-01' is not a date (YYYY-MM-DD)"),
    ("BTCUSDT", "2025-09-01", "yesterday", "--to 'yesterday' is not a date (YYYY-MM-DD)"),
    ("BTCUSDT", "2025-09-01", "2025-09-21", "--to 2025-09-21 is in the future (today is "
                                            "2025-09-20 UTC)"),
    ("BTCUSDT", "2025-09-05", "2025-09-01", "--from 2025-09-05 is after --to 2025-09-01"),
    ("BTCUSDT", "2016-01-01", "2016-01-02", "--from 2016-01-01 is before Binance's first trades"),
    ("BTC/USDT", "2025-09-01", "2025-09-02", "--symbols: 'BTC/USDT' is not a Binance symbol"),
    (" , ", "2025-09-01", "2025-09-02", "--symbols: at least one symbol is required"),
])
def test_invalid_requests_are_one_clear_line(symbols: str, first: str, last: str,
                                             message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        validate(symbols, ["BTCUSDT"], first, last, TODAY)


def test_main_reports_a_bad_argument_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        backfill.main(["--symbols", "BTCUSDT", "--from", "2025-09-02", "--to", "2025-09-01"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "python -m etl.backfill: error: --from 2025-09-02 is after --to 2025-09-01\n"


def test_main_requires_the_dates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        backfill.main(["--from", "2025-09-02"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_summary_marks_failures() -> None:
    table = summary_table([
        DayOutcome("BTCUSDT", date(2025, 9, 1), backfill.LOADED, rows=10, inserted=10,
                   unit="us", path="fresh", size=2_000_000, seconds=2.0),
        DayOutcome("BTCUSDT", date(2025, 9, 2), backfill.MISSING, detail="HTTP 404 for x.zip"),
    ])
    assert table.row_count == 2
    statuses = list(table.columns[2].cells)
    assert statuses == ["loaded", f"[red]{backfill.MISSING}[/red]"]
    assert list(table.columns[10].cells) == ["5", ""]


def test_main_reports_an_unreachable_database_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{port}/x")
    monkeypatch.setenv("BINANCE_DATA_URL", "http://127.0.0.1:9")

    code = backfill.main(["--symbols", "BTCUSDT", "--from", "2025-09-01", "--to", "2025-09-01"])

    assert code == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the INFO line that names the source and the target
    assert last.startswith(f"backfill: database postgresql://u:***@127.0.0.1:{port}/x: ")
    assert "Connection refused" in last
    assert "secret" not in err
