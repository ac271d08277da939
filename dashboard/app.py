"""The Dash app and its JSON API: layout, callbacks and one Flask route, all thin.

Callbacks and the route only shape data: SQL lives in `dashboard.queries`, the chart in
`dashboard.charts`, the Days and Health data in `dashboard.status`. Dash and Plotly serve their
JavaScript from their own wheels (`serve_locally`): the page fetches nothing from elsewhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import dash
import orjson
from dash import Input, Output, State, dcc, html
from flask import Response, request

from binance_etl.db import resolve_database_url, resolve_warehouse_url
from binance_etl.settings import Settings, SettingsError
from dashboard.bars import (
    BadRequest,
    BarsQuery,
    FactsCache,
    bars_response,
    day_start,
    fetch_bars_json,
    parse_bars_query,
)
from dashboard.charts import candle_figure, empty_figure
from dashboard.queries import (
    Database,
    DatabaseUnavailable,
    live_version,
    ping,
    warehouse_days,
)
from dashboard.status import DayStatus, DaysView, SymbolHealth, symbol_health
from etl.lake import Lake
from etl.utils import parse_lake_uri

logger = logging.getLogger(__name__)

LIVE = "live"
LIVE_REFRESH_MS = 1000  # a changed bar is redrawn within about a second (contract: 2 s)
HEALTH_REFRESH_MS = 2000
DAYS_REFRESH_MS = 15_000


@dataclass
class Sources:
    raw: Database
    warehouse: Database
    lake: Lake
    cache: FactsCache = field(default_factory=FactsCache)

    def close(self) -> None:
        self.raw.close()
        if self.warehouse is not self.raw:
            self.warehouse.close()


def open_sources(settings: Settings) -> Sources:
    if settings.warehouse_is_redshift:
        raise SettingsError("WAREHOUSE_URL: the dashboard reads a PostgreSQL warehouse; "
                            "Redshift is not supported yet")
    raw_url = resolve_database_url(settings)
    warehouse_url = resolve_warehouse_url(settings)
    raw = Database(raw_url, name="raw store")
    warehouse = raw if warehouse_url == raw_url else Database(warehouse_url, name="warehouse")
    lake = Lake(parse_lake_uri(settings.lake_uri), s3_endpoint_url=settings.s3_endpoint_url)
    return Sources(raw, warehouse, lake)


def json_response(status: int, body: bytes) -> Response:
    return Response(body, status=status, mimetype="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response(status, orjson.dumps({"error": message}))


def create_app(settings: Settings, sources: Sources) -> dash.Dash:
    app = dash.Dash(
        __name__,
        title="binance-etl dashboard",
        serve_locally=True,
        # plotly.js: the finance partial bundle in assets/ (candlestick, bar, scatter: 1.3 MB
        # instead of the full 4.8 MB; scripts/vendor_plotly.py) loads with the page and sets
        # window.Plotly, which dcc.Graph uses. Eager loading would add a <script> for the full
        # plotly.min.js too; lazily, dcc.Graph only fetches it when window.Plotly is missing.
        eager_loading=False,
        update_title="",  # no "Updating..." flicker in the tab title every second
        suppress_callback_exceptions=False,
    )
    app.layout = layout(settings)
    register_callbacks(app, settings, sources)
    register_api(app, settings, sources)
    return app


# -- the API ---------------------------------------------------------------------------------
def register_api(app: dash.Dash, settings: Settings, sources: Sources) -> None:
    max_range = timedelta(days=settings.dashboard_max_range_days)
    server = app.server

    @server.get("/api/bars")
    def api_bars() -> Response:
        try:
            query = parse_bars_query(request.args.to_dict(), settings.symbols, max_range)
        except BadRequest as error:
            return error_response(400, str(error))
        try:
            bars = fetch_bars_json(sources.warehouse, sources.raw, query, sources.cache)
        except DatabaseUnavailable as error:
            logger.warning("GET /api/bars: %s", error)
            return error_response(503, str(error))
        return json_response(200, bars_response(query.symbol, bars))


# -- the page --------------------------------------------------------------------------------
def layout(settings: Settings) -> html.Div:
    candles = html.Div([
        html.Div([
            html.Label(["Symbol", dcc.Dropdown(
                id="symbol", options=settings.symbols, value=settings.symbols[0],
                clearable=False)], className="picker"),
            html.Label(["Day", dcc.Dropdown(
                id="day", options=day_choices(), value=LIVE,
                clearable=False)], className="picker"),
        ], className="pickers"),
        html.Div(id="candles-status", className="status"),
        dcc.Graph(id="candles", figure=empty_figure("loading…"),
                  config={"displaylogo": False}),
        html.P("Today's bars are live (bars_1m, redrawn about every second); pale, outlined "
               "bars are provisional: their minute is still forming or not yet complete. Past "
               "days come from the warehouse's fact_trades. Hover shows the stored decimals.",
               className="note"),
    ])
    return html.Div([
        dcc.Location(id="url", refresh=False),
        html.H1("binance-etl"),
        html.Div(id="db-status", className="status"),
        dcc.Tabs(id="tabs", value="candles", children=[
            dcc.Tab(label="Candles", value="candles", children=candles),
            dcc.Tab(label="Days", value="days", children=html.Div(id="days")),
            dcc.Tab(label="Health", value="health", children=html.Div(id="health")),
        ]),
        dcc.Interval(id="tick", interval=LIVE_REFRESH_MS),
        dcc.Interval(id="health-tick", interval=HEALTH_REFRESH_MS),
        dcc.Interval(id="days-tick", interval=DAYS_REFRESH_MS),
        dcc.Store(id="live-version"),
    ], className="page")


def register_callbacks(app: dash.Dash, settings: Settings, sources: Sources) -> None:
    days_view = DaysView(sources.raw, sources.warehouse, sources.lake, settings.dashboard_days)

    @app.callback(
        Output("symbol", "value"), Output("day", "value"), Output("day", "options"),
        Input("url", "search"), Input("days-tick", "n_intervals"),
    )
    def pickers(search: str | None, _: int | None) -> Any:
        """The days the warehouse holds; `/?symbol=ETHUSDT&day=2025-09-10` opens on that
        symbol and day (only when the address changes, not on each refresh)."""
        asked = parse_qs((search or "").lstrip("?"))
        symbol = asked.get("symbol", [""])[0].upper()
        try:
            day = date.fromisoformat(asked.get("day", [""])[0]).isoformat()
        except ValueError:
            day = None
        try:
            loaded = [day.isoformat() for day in warehouse_days(sources.warehouse)]
        except DatabaseUnavailable:
            loaded = []
        options = day_choices(*loaded, *([day] if day and day not in loaded else []))
        if set(dash.ctx.triggered_prop_ids.values()) == {"days-tick"}:
            return dash.no_update, dash.no_update, options
        return (symbol if symbol in settings.symbols else dash.no_update,
                day or dash.no_update, options)

    @app.callback(
        Output("live-version", "data"), Output("candles-status", "children"),
        Input("tick", "n_intervals"), State("symbol", "value"), State("day", "value"),
        State("live-version", "data"),
    )
    def poll_live(_: int | None, symbol: str | None, day: str | None,
                  version: str | None) -> Any:
        """Every second, a cheap check of today's bars; the chart redraws only on a change."""
        if not symbol or (day or LIVE) != LIVE:
            return dash.no_update, dash.no_update
        today = day_start(datetime.now(UTC).date())
        try:
            current = f"{symbol}|{today:%F}|" + live_version(
                sources.raw, symbol, today, today + timedelta(days=1))
        except DatabaseUnavailable as error:
            return dash.no_update, f"Database unavailable: {error}"
        return (dash.no_update if current == version else current), ""

    @app.callback(
        Output("candles", "figure"), Output("candles-status", "children", allow_duplicate=True),
        Input("symbol", "value"), Input("day", "value"), Input("live-version", "data"),
        prevent_initial_call="initial_duplicate",
    )
    def candles(symbol: str | None, day: str | None, _: str | None) -> Any:
        if not symbol:
            return dash.no_update, dash.no_update
        day = day or LIVE
        when = datetime.now(UTC).date() if day == LIVE else date.fromisoformat(day)
        query = BarsQuery(symbol, day_start(when), day_start(when) + timedelta(days=1))
        try:
            bars = orjson.loads(fetch_bars_json(sources.warehouse, sources.raw, query,
                                                sources.cache))
        except DatabaseUnavailable as error:
            return dash.no_update, f"Database unavailable: {error}"
        if not bars:
            what = "no live bars yet today" if day == LIVE else "no bars that day"
            return empty_figure(f"{symbol}: {what}"), ""
        provisional = sum(1 for bar in bars if not bar["complete"])
        sources_seen = sorted({bar["source"] for bar in bars})
        title = (f"{symbol} · {when} UTC · {len(bars)} bars"
                 f"{f' ({provisional} provisional)' if provisional else ''}"
                 f" · {' + '.join(sources_seen)}")
        return candle_figure(bars, title, revision=f"{symbol}|{day}"), ""

    @app.callback(Output("days", "children"), Input("days-tick", "n_intervals"),
                  Input("tabs", "value"))
    def days(_: int | None, tab: str) -> Any:
        if tab != "days":
            return dash.no_update
        try:
            return days_table(days_view.statuses())
        except DatabaseUnavailable as error:
            return html.Div(f"Database unavailable: {error}", className="status error")

    @app.callback(Output("health", "children"), Output("db-status", "children"),
                  Input("health-tick", "n_intervals"))
    def health(_: int | None) -> Any:
        try:
            ping(sources.warehouse)
            rows = symbol_health(sources.raw, settings.symbols, settings.dashboard_stale_seconds)
        except DatabaseUnavailable as error:
            banner = html.Div(f"Database unavailable: {error}. Showing the last data received; "
                              "retrying.", className="status error", id="db-down")
            return dash.no_update, banner
        return health_table(rows, settings.dashboard_stale_seconds), ""


def day_choices(*days: str) -> list[dict[str, str]]:
    today = datetime.now(UTC).date()
    options = [{"label": f"today {today} (live)", "value": LIVE}]
    return options + [{"label": f"{day} (warehouse)", "value": day} for day in days if day != LIVE]


def _mark(passed: bool | None) -> html.Span:
    if passed is None:
        return html.Span("—", className="unknown")
    return html.Span("✓" if passed else "✗", className="pass" if passed else "fail")


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def days_table(statuses: list[DayStatus]) -> html.Table:
    header = html.Tr([html.Th(name) for name in (
        "UTC day", "raw day", "batch", "quality", "checks", "lake facts", "warehouse facts")])
    rows = []
    for status in statuses:
        checks = html.Ul([
            html.Li([_mark(check["passed"]), f" {check['name']}: {check['detail']}"],
                    className="check")
            for check in status.checks
        ]) if status.checks else "—"
        verdict = "no report" if status.passed is None else (
            "passed" if status.passed else "failed")
        rows.append(html.Tr([
            html.Td(str(status.day)),
            html.Td([_mark(status.raw_complete), f" {status.raw_detail}"]),
            html.Td(status.batch),
            html.Td([_mark(status.passed), f" {verdict}"]),
            html.Td(checks),
            html.Td(_count(status.lake_rows)),
            html.Td(_count(status.warehouse_rows)),
        ], id=f"day-{status.day}"))
    return html.Table([html.Thead(header), html.Tbody(rows)], className="grid", id="days-table")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:,.1f} s"


def health_table(rows: list[SymbolHealth], stale_seconds: float) -> html.Table:
    header = html.Tr([html.Th(name) for name in (
        "symbol", "last stored trade (UTC)", "age", "rate", "lag p50 (ingested − traded)",
        "lag max", "state")])
    body = []
    for row in rows:
        state = (f"STALE (no trade for over {stale_seconds:.0f} s)" if row.stale else "ok")
        body.append(html.Tr([
            html.Td(row.symbol),
            html.Td(row.last_trade.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if row.last_trade
                    else "never"),
            html.Td(_seconds(row.age_seconds)),
            html.Td(f"{row.rate_per_second:,.1f}/s"),
            html.Td(_seconds(row.lag_p50_seconds)),
            html.Td(_seconds(row.lag_max_seconds)),
            html.Td(state, className="fail" if row.stale else "pass"),
        ], className="stale" if row.stale else "fresh", id=f"health-{row.symbol}"))
    return html.Table([html.Thead(header), html.Tbody(body)], className="grid", id="health-table")
