"""The plotly.js the page uses: the finance partial bundle vendored in `assets/`.

Candlesticks, bars and one line is all the dashboard draws; plotly.js's finance bundle holds
them in 1.3 MB, where the full plotly.min.js that Dash would serve from the plotly wheel is
4.8 MB, and evaluating that was most of the page's time to its first candles. Dash serves every
file of `assets/` with the page; the bundle sets `window.Plotly`, which dcc.Graph uses instead
of fetching its own. `scripts/vendor_plotly.py` refreshes the file from the npm registry
(sha512-verified); nothing is fetched at run time.
"""

from __future__ import annotations

import re
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent / "assets" / "plotly-finance.min.js"
_HEADER = re.compile(r"plotly\.js \(finance - minified\) v(\d+\.\d+\.\d+)")


def bundle_version(path: Path = BUNDLE) -> str:
    """The plotly.js version the vendored bundle declares in its header."""
    with path.open(encoding="utf-8") as handle:
        head = handle.read(400)
    match = _HEADER.search(head)
    if match is None:
        raise ValueError(f"{path}: not a plotly.js finance bundle (no version header)")
    return match.group(1)
