"""`python stream.py [--symbols BTCUSDT,ETHUSDT] [--duration SECONDS]`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from binance_etl.db import resolve_database_url
from binance_etl.ingest.streamer import Streamer, StreamerConfig
from binance_etl.logs import setup_logging
from binance_etl.settings import SettingsError, load_settings, parse_symbols

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream.py",
        description="Stream Binance spot trades into PostgreSQL until SIGINT/SIGTERM.",
    )
    parser.add_argument("--symbols", help="comma list, any case (default: SYMBOLS)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    logging.getLogger("picows").setLevel(logging.WARNING)  # one INFO line per connection
    if args.duration is not None and args.duration <= 0:
        raise SystemExit("--duration: must be a positive number of seconds")
    settings = load_settings()
    overrides = {}
    if args.symbols is not None:
        try:
            overrides["symbols"] = tuple(parse_symbols(args.symbols))
        except ValueError as error:
            raise SettingsError(f"--symbols: {error}") from None
    config = StreamerConfig.from_settings(settings, resolve_database_url(settings), **overrides)
    summary = asyncio.run(Streamer(config).run(args.duration))
    for line in summary.lines():
        print(line, flush=True)
    return 0
