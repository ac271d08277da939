"""The Dash app and its JSON API: layout, callbacks and one Flask route, all thin.

Callbacks and the route only shape data: SQL lives in `dashboard.queries`, the chart in
`dashboard.charts`, the Days and Health data in `dashboard.status`. Dash and Plotly serve their
JavaScript from their own wheels (`serve_locally`): the page fetches nothing from elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import dash
import orjson
from dash import Input, Output, State, dcc, html
from flask import Response, has_request_context, request

from binance_etl.db import resolve_database_url, resolve_warehouse_url
from binance_etl.settings import Settings, SettingsError
from dashboard.bars import (
    BadRequest,
    BarsQuery,
    bars_response,
    day_start,
    fetch_bars_json,
    parse_bars_query,
)
from dashboard.charts import candle_figure, empty_figure
from dashboard.queries import Database, DatabaseUnavailable, ping, warehouse_days
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
        update_title="",  # no "Updating..." flicker in the tab title every second
        suppress_callback_exceptions=False,
    )
    app.layout = partial(layout_for_request, settings)  # per page load: reads ?symbol=&day=
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
            bars = fetch_bars_json(sources.warehouse, sources.raw, query)
        except DatabaseUnavailable as error:
            logger.warning("GET /api/bars: %s", error)
            return error_response(503, str(error))
        return json_response(200, bars_response(query.symbol, bars))


# -- the page --------------------------------------------------------------------------------
def layout_for_request(settings: Settings) -> html.Div:
    """The page; `/?symbol=ETHUSDT&day=2025-09-10` opens on that symbol and warehouse day."""
    symbol, day = settings.symbols[0], LIVE
    if has_request_context():
        asked = request.args.get("symbol", "").upper()
        symbol = asked if asked in settings.symbols else symbol
        try:
            day = date.fromisoformat(request.args.get("day", "")).isoformat()
        except ValueError:
            day = LIVE
    return layout(settings, symbol, day)


def layout(settings: Settings, symbol: str, day: str) -> html.Div:
    candles = html.Div([
        html.Div([
            html.Label(["Symbol", dcc.Dropdown(
                id="symbol", options=settings.symbols, value=symbol,
                clearable=False)], className="picker"),
            html.Label(["Day", dcc.Dropdown(
                id="day", options=day_choices(day), value=day,
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
        dcc.Store(id="signature"),
    ], className="page")


def register_callbacks(app: dash.Dash, settings: Settings, sources: Sources) -> None:
    days_view = DaysView(sources.raw, sources.warehouse, sources.lake, settings.dashboard_days)

    @app.callback(Output("day", "options"), Input("days-tick", "n_intervals"))
    def day_options(_: int | None) -> Any:
        try:
            loaded = warehouse_days(sources.warehouse)
        except DatabaseUnavailable:
            return dash.no_update
        return day_choices(*(day.isoformat() for day in loaded))

    @app.callback(
        Output("candles", "figure"), Output("signature", "data"), Output("candles-status",
                                                                         "children"),
        Input("symbol", "value"), Input("day", "value"), Input("tick", "n_intervals"),
        State("signature", "data"),
    )
    def candles(symbol: str, day: str, _: int | None, signature: str | None) -> Any:
        if dash.ctx.triggered_id == "tick" and day != LIVE:
            return dash.no_update, dash.no_update, dash.no_update  # a past day does not change
        when = datetime.now(UTC).date() if day == LIVE else date.fromisoformat(day)
        query = BarsQuery(symbol, day_start(when), day_start(when) + timedelta(days=1))
        try:
            text = fetch_bars_json(sources.warehouse, sources.raw, query)
        except DatabaseUnavailable as error:
            return dash.no_update, dash.no_update, f"Database unavailable: {error}"
        key = f"{symbol}|{day}|{hashlib.blake2b(text, digest_size=16).hexdigest()}"
        if key == signature:
            return dash.no_update, dash.no_update, ""
        bars = orjson.loads(text)
        if not bars:
            what = "no live bars yet today" if day == LIVE else "no bars that day"
            return empty_figure(f"{symbol}: {what}"), key, ""
        provisional = sum(1 for bar in bars if not bar["complete"])
        sources_seen = sorted({bar["source"] for bar in bars})
        title = (f"{symbol} · {when} UTC · {len(bars)} bars"
                 f"{f' ({provisional} provisional)' if provisional else ''}"
                 f" · {' + '.join(sources_seen)}")
        return candle_figure(bars, title, revision=f"{symbol}|{day}"), key, ""

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
