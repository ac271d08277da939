"""Vendor plotly.js's "finance" partial bundle into the dashboard package (maintainers only).

    python scripts/vendor_plotly.py [VERSION]

The dashboard draws candlesticks, bars and one line: plotly.js's finance bundle (1.3 MB) holds
all three, where the full plotly.min.js that Dash serves from the plotly wheel is 4.8 MB and
evaluating it was most of the page's time to its first candles. This script downloads the npm
package `plotly.js-finance-dist-min` at VERSION (default: the one vendored now) from the npm
registry, verifies the tarball against the registry's sha512 `integrity`, and writes the bundle
and its MIT licence into `dashboard/assets/`, where Dash serves it with the page. Nothing is
fetched at run time. Keep VERSION's major.minor equal to the plotly.js of the installed plotly
wheel (`python -c "import plotly.offline as o; print(o.get_plotlyjs_version())"`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "plotly.js-finance-dist-min"
VERSION = "4.1.0"
REGISTRY = "https://registry.npmjs.org"
ASSETS = Path(__file__).resolve().parent.parent / "dashboard" / "assets"
BUNDLE = "plotly-finance.min.js"
LICENCE = "plotly-finance.LICENSE.txt"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https only)
        return bytes(response.read())


def main(argv: list[str]) -> int:
    version = argv[0] if argv else VERSION
    meta = json.loads(fetch(f"{REGISTRY}/{PACKAGE}/{version}"))
    algorithm, _, digest = meta["dist"]["integrity"].partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"unexpected integrity algorithm {algorithm!r}")
    tarball = fetch(meta["dist"]["tarball"])
    if base64.b64encode(hashlib.sha512(tarball).digest()).decode() != digest:
        raise SystemExit(f"{PACKAGE}@{version}: tarball does not match the registry's sha512")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        files = {member.name: archive.extractfile(member) for member in archive.getmembers()}
        bundle = files[f"package/{BUNDLE}"]
        licence = files["package/LICENSE"]
        if bundle is None or licence is None:
            raise SystemExit(f"{PACKAGE}@{version}: the tarball lacks the bundle or its licence")
        (ASSETS / BUNDLE).write_bytes(bundle.read())
        (ASSETS / LICENCE).write_bytes(licence.read())
    print(f"{PACKAGE}@{version} -> {ASSETS / BUNDLE} "
          f"({(ASSETS / BUNDLE).stat().st_size:,} bytes, sha256 "
          f"{hashlib.sha256((ASSETS / BUNDLE).read_bytes()).hexdigest()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
