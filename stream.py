"""Real-time ingest of Binance spot trades into PostgreSQL (see docs/ingest.md)."""

from __future__ import annotations

import sys

from binance_etl.ingest.cli import main

if __name__ == "__main__":
    sys.exit(main())
