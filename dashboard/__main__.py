"""`python -m dashboard [--host 127.0.0.1] [--port 8050]`: the dashboard and its JSON API.

Served by waitress (a production WSGI server, pure Python) on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys

import waitress

from binance_etl.logs import setup_logging
from binance_etl.settings import load_settings
from dashboard.app import create_app, open_sources

logger = logging.getLogger("dashboard")

THREADS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="TCP port (default 8050)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    setup_logging()
    # waitress warns at every queued request under load; the requests are served all the same.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    settings = load_settings()
    sources = open_sources(settings)
    app = create_app(settings, sources)
    server = waitress.create_server(app.server, host=args.host, port=args.port, threads=THREADS,
                                    ident="binance-etl-dashboard")
    port = server.effective_port  # type: ignore[union-attr]
    print(f"dashboard: http://{args.host}:{port}/  (API: /api/bars?symbol=&start=&end=)",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        sources.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
