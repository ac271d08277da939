"""The candle chart, built from bars in the API's shape (pure: no database, no Dash).

Plotly draws with floats, so the hover text carries the exact decimal strings as stored, and
`customdata` holds them too; nothing shown on hover is a rounded float.
"""

from __future__ import annotations

from typing import Any

FINAL = {"increasing": "#26a69a", "decreasing": "#ef5350"}
PROVISIONAL = {"increasing": "#9ccfc9", "decreasing": "#f3a8a6"}
VWAP_COLOR = "#ff9800"
HOVER_FIELDS = ("open", "high", "low", "close", "volume", "value", "vwap")


def hover_text(bar: dict[str, Any]) -> str:
    state = "final" if bar["complete"] else "provisional (minute still forming or incomplete)"
    lines = [f"<b>{bar['minute']}</b> · {bar['source']} · {state}"]
    lines += [f"{name} {bar[name] if bar[name] is not None else '—'}" for name in HOVER_FIELDS]
    lines.append(f"trades {bar['trades']}")
    return "<br>".join(lines)


def _candles(bars: list[dict[str, Any]], name: str, colors: dict[str, str],
             opacity: float) -> dict[str, Any]:
    return {
        "type": "candlestick",
        "name": name,
        "x": [bar["minute"] for bar in bars],
        "open": [float(bar["open"]) for bar in bars],
        "high": [float(bar["high"]) for bar in bars],
        "low": [float(bar["low"]) for bar in bars],
        "close": [float(bar["close"]) for bar in bars],
        "customdata": [[bar[field] for field in HOVER_FIELDS] for bar in bars],
        "hovertext": [hover_text(bar) for bar in bars],
        "hoverinfo": "text",
        "opacity": opacity,
        "increasing": {"line": {"color": colors["increasing"]},
                       "fillcolor": colors["increasing"]},
        "decreasing": {"line": {"color": colors["decreasing"]},
                       "fillcolor": colors["decreasing"]},
        "xaxis": "x",
        "yaxis": "y",
    }


def candle_figure(bars: list[dict[str, Any]], title: str, revision: str) -> dict[str, Any]:
    """Candlesticks (final bars solid, provisional ones pale and marked), the VWAP line and the
    volume bars below on the same UTC time axis. A plain figure dict: building 1,440 bars
    through plotly's validating graph objects costs far more than drawing them."""
    final = [bar for bar in bars if bar["complete"]]
    provisional = [bar for bar in bars if not bar["complete"]]
    with_vwap = [bar for bar in bars if bar["vwap"] is not None]
    data = [
        _candles(final, "final bars", FINAL, 1.0),
        _candles(provisional, "provisional bars", PROVISIONAL, 0.7),
        {
            "type": "scatter", "mode": "lines", "name": "VWAP",
            "x": [bar["minute"] for bar in with_vwap],
            "y": [float(bar["vwap"]) for bar in with_vwap],
            "customdata": [bar["vwap"] for bar in with_vwap],
            "hovertemplate": "vwap %{customdata}<extra></extra>",
            "line": {"color": VWAP_COLOR, "width": 1.5},
            "xaxis": "x", "yaxis": "y",
        },
        {
            "type": "bar", "name": "volume",
            "x": [bar["minute"] for bar in bars],
            "y": [float(bar["volume"]) for bar in bars],
            "customdata": [[bar["volume"], bar["trades"]] for bar in bars],
            "hovertemplate": "volume %{customdata[0]}<br>trades %{customdata[1]}<extra></extra>",
            "marker": {
                "color": [FINAL["increasing"] if bar["complete"] else PROVISIONAL["increasing"]
                          for bar in bars],
                "line": {"width": [0 if bar["complete"] else 1 for bar in bars],
                         "color": "#555"},
            },
            "xaxis": "x", "yaxis": "y2",
        },
    ]
    layout = {
        "title": {"text": title, "x": 0.01},
        "uirevision": revision,  # live redraws keep the user's zoom
        "margin": {"l": 70, "r": 20, "t": 50, "b": 40},
        "height": 620,
        "hovermode": "x",  # a label per trace at the pointer's minute
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "x": 0.5, "xanchor": "center"},
        "xaxis": {"type": "date", "title": {"text": "UTC"}, "rangeslider": {"visible": False},
                  "anchor": "y2"},
        "yaxis": {"title": {"text": "price"}, "domain": [0.3, 1.0]},
        "yaxis2": {"title": {"text": "volume"}, "domain": [0.0, 0.24]},
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
    }
    return {"data": data, "layout": layout}


def empty_figure(message: str) -> dict[str, Any]:
    return {
        "data": [],
        "layout": {
            "annotations": [{"text": message, "showarrow": False, "xref": "paper",
                             "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 16}}],
            "xaxis": {"visible": False}, "yaxis": {"visible": False}, "height": 620,
            "plot_bgcolor": "white", "paper_bgcolor": "white",
        },
    }
