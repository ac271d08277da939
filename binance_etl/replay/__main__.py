"""`python -m binance_etl.replay --symbols BTCUSDT,ETHUSDT --rate 200` — run the feed until
SIGINT/SIGTERM.

Prints one line, `BINANCE_WS_URL=ws://... BINANCE_REST_URL=http://... BINANCE_DATA_URL=http://...`,
once it listens; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from binance_etl.logs import setup_logging
from binance_etl.replay.options import FeedOptions, parse_args
from binance_etl.replay.server import FeedServer
from binance_etl.replay.tradefile import TradeFileError

log = logging.getLogger(__name__)


def url_line(server: FeedServer) -> str:
    return (f"BINANCE_WS_URL={server.ws_url} BINANCE_REST_URL={server.rest_url} "
            f"BINANCE_DATA_URL={server.rest_url}")


async def serve(options: FeedOptions) -> None:
    server = FeedServer(options)
    try:
        await server.start()
    except OSError as error:
        raise SystemExit(f"replay: cannot listen on {options.host}:{options.port}: {error}") \
            from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(url_line(server), flush=True)
    await stop.wait()
    log.info("stopping: %s", server.stats())
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    setup_logging()
    logging.getLogger("picows").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(options))
    except (TradeFileError, OSError) as error:
        raise SystemExit(f"replay: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
