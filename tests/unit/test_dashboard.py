"""The dashboard's pure parts: API parameters, the days a range touches, the chart's exact hover
values, the Days view's reading of a quality report, the CLI's defaults."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from binance_etl.settings import load_settings
from dashboard.bars import BadRequest, bars_response, days_touched, parse_bars_query
from dashboard.charts import candle_figure
from dashboard.status import batch_summary

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
WEEK = timedelta(days=7)


def test_parameters_are_normalised_to_utc() -> None:
    query = parse_bars_query({"symbol": "ethusdt", "start": "2025-09-10T06:00:00+02:00",
                              "end": "2025-09-10T05:00:00"}, SYMBOLS, WEEK)
    assert query.symbol == "ETHUSDT"
    assert query.start == datetime(2025, 9, 10, 4, tzinfo=UTC)
    assert query.end == datetime(2025, 9, 10, 5, tzinfo=UTC)  # no offset: taken as UTC


def test_the_maximum_range_is_allowed_and_one_microsecond_more_is_not() -> None:
    args = {"symbol": "BTCUSDT", "start": "2025-09-01T00:00:00Z", "end": "2025-09-08T00:00:00Z"}
    assert parse_bars_query(args, SYMBOLS, WEEK).end == datetime(2025, 9, 8, tzinfo=UTC)
    args["end"] = "2025-09-08T00:00:00.000001Z"
    with pytest.raises(BadRequest, match="DASHBOARD_MAX_RANGE_DAYS"):
        parse_bars_query(args, SYMBOLS, WEEK)


@pytest.mark.parametrize("symbol", ["", "BTC/USDT", "x" * 21, "btc usdt"])
def test_malformed_symbols(symbol: str) -> None:
    with pytest.raises(BadRequest, match="symbol"):
        parse_bars_query({"symbol": symbol, "start": "2025-09-01", "end": "2025-09-02"},
                         SYMBOLS, WEEK)


def test_days_touched_by_a_range() -> None:
    start = datetime(2025, 9, 10, 23, 30, tzinfo=UTC)
    assert days_touched(start, start + timedelta(minutes=30)) == [
        datetime(2025, 9, 10, tzinfo=UTC)]
    assert days_touched(start, start + timedelta(minutes=31)) == [
        datetime(2025, 9, 10, tzinfo=UTC), datetime(2025, 9, 11, tzinfo=UTC)]


def test_response_wraps_bars_that_are_already_json() -> None:
    assert bars_response("BTCUSDT", b"[]") == b'{"symbol":"BTCUSDT","bars":[]}'


def bar(minute: str, close: str, complete: bool) -> dict[str, Any]:
    return {"minute": minute, "open": "0.01012345", "high": "0.01012399", "low": "0.01012300",
            "close": close, "volume": "1234.56789000", "value": "12.4999999999999999",
            "vwap": "0.010123449999", "trades": 7, "source": "live", "complete": complete}


def test_chart_hover_shows_the_stored_decimals_and_marks_provisional_bars() -> None:
    bars = [bar("2025-09-10T04:00:00Z", "0.01012399", True),
            bar("2025-09-10T04:01:00Z", "0.01012300", False)]
    figure = candle_figure(bars, "t", "r")
    final, provisional, vwap, volume = figure["data"]
    assert [final["name"], provisional["name"]] == ["final bars", "provisional bars"]
    assert final["x"] == ["2025-09-10T04:00:00Z"]
    assert provisional["x"] == ["2025-09-10T04:01:00Z"]
    assert "value 12.4999999999999999" in final["hovertext"][0]  # float would say 12.5
    assert "vwap 0.010123449999" in final["hovertext"][0]
    assert "provisional" in provisional["hovertext"][0]
    assert vwap["customdata"] == ["0.010123449999", "0.010123449999"]
    assert volume["customdata"][0] == ["1234.56789000", 7]
    assert volume["marker"]["line"]["width"] == [0, 1]  # provisional volume bars outlined


class FakeLake:
    def __init__(self, published: dict[str, Any] | None, staged: dict[str, Any] | None) -> None:
        self.published, self.staged = published, staged

    def read_published_report(self, day: date) -> dict[str, Any] | None:
        return self.published

    def read_staged_report(self, day: date) -> dict[str, Any] | None:
        return self.staged


def test_every_check_of_a_report_is_shown_including_new_ones() -> None:
    report = {"passed": False, "checked_at": "2025-09-11T04:10:00+00:00", "checks": [
        {"name": "row_count", "passed": True, "detail": "9000 trade(s) in the facts"},
        {"name": "exchange_klines", "passed": False, "detail": "3 minute(s) differ",
         "extra": [1, 2]},
    ]}
    ran, passed, checks = batch_summary(FakeLake(None, report), date(2025, 9, 10))  # type: ignore[arg-type]
    assert ran == "ran, gate failed (staged, not published), checked 2025-09-11 04:10:00 UTC"
    assert passed is False
    assert checks == [
        {"name": "row_count", "passed": True, "detail": "9000 trade(s) in the facts"},
        {"name": "exchange_klines", "passed": False, "detail": "3 minute(s) differ"},
    ]
    assert batch_summary(FakeLake(None, None), date(2025, 9, 10)) == ("not run", None, [])  # type: ignore[arg-type]


def test_cli_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.__main__ as cli

    seen: dict[str, Any] = {}

    def fake_serve(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "load_settings", lambda: None)
    monkeypatch.setattr(cli, "open_sources", lambda settings: None)
    monkeypatch.setattr(cli, "create_app", lambda settings, sources: type("A", (), {"server": 1}))
    monkeypatch.setattr(cli.waitress, "create_server", fake_serve)
    with pytest.raises(SystemExit):
        cli.main([])
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8050)


def test_the_vendored_plotly_bundle_matches_the_plotly_wheel() -> None:
    # The figures are built by the plotly wheel for its plotly.js; the page draws them with the
    # vendored finance bundle: same major.minor, or refresh it (scripts/vendor_plotly.py).
    from plotly.offline import get_plotlyjs_version

    from dashboard.plotlyjs import BUNDLE, bundle_version

    assert BUNDLE.stat().st_size < 2_000_000  # the partial bundle, not the full 4.8 MB one
    assert bundle_version().split(".")[:2] == get_plotlyjs_version().split(".")[:2]


def test_the_page_loads_the_finance_bundle_and_not_the_full_plotly() -> None:
    from dashboard.app import create_app

    settings = load_settings(symbols="BTCUSDT")
    # the index page needs no database: sources that are never opened
    sources = SimpleNamespace(raw=object(), warehouse=object(), lake=object(), cache=None)
    app = create_app(settings, sources)  # type: ignore[arg-type]
    html = app.server.test_client().get("/").get_data(as_text=True)
    assert "/assets/plotly-finance.min.js" in html
    assert "plotly.min.js" not in html
