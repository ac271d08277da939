"""The feed: one market, fanned out to every WebSocket client, plus REST on the same port.

`FeedServer(options)` owns the market, the picows server (which routes each HTTP request either
to a WebSocket `Connection` or to `RestApi`), the producer task and the heartbeat task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from http import HTTPStatus

from picows import (
    WSCloseCode,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from binance_etl.replay.broadcast import stream_name
from binance_etl.replay.connection import Connection
from binance_etl.replay.control import parse_stream_path
from binance_etl.replay.generator import SymbolGenerator
from binance_etl.replay.limits import WeightLimiter
from binance_etl.replay.market import Market, RecordedSource, TradeSource
from binance_etl.replay.options import FeedOptions
from binance_etl.replay.producer import Producer
from binance_etl.replay.rest import Response, RestApi
from binance_etl.replay.tradefile import TradeWriter, read_trade_file

log = logging.getLogger(__name__)

CONNECTION_WINDOW_S = 300.0


def build_market(options: FeedOptions) -> Market:
    """The generated market of `options.symbols`, or the recorded one of `options.trade_file`."""
    sources: dict[str, TradeSource]
    if options.trade_file:
        recorded = read_trade_file(options.trade_file)
        sources = {symbol: RecordedSource(trades) for symbol, trades in recorded.items()}
    else:
        sources = {symbol: SymbolGenerator(symbol, options.seed) for symbol in options.symbols}
    return Market(sources, history_limit=options.history_limit)


def _http(response: Response) -> WSUpgradeResponseWithListener:
    if response.status < 400:
        reply = WSUpgradeResponse.create_ok_response(response.body, response.headers)
        reply.status = HTTPStatus(response.status)
    else:
        reply = WSUpgradeResponse.create_error_response(response.status, response.body,
                                                        response.headers)
    return WSUpgradeResponseWithListener(reply, None)


class FeedServer:
    """A Binance-compatible spot feed. `await start()`, read `ws_url`/`rest_url`, `await stop()`."""

    def __init__(self, options: FeedOptions) -> None:
        self.options = options
        self.market = build_market(options)
        self.limiter = WeightLimiter(options.weight_limit, fail_every=options.rest_429_every,
                                     retry_after=options.retry_after,
                                     ban_seconds=options.ban_seconds)
        self.rest = RestApi(self.market, self.limiter, self, options.dumps_dir,
                            klines_fault=options.klines_fault)
        self.connections: set[Connection] = set()
        self.frames_sent_closed = 0
        self.connections_total = 0
        self._handshakes: dict[str, deque[float]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._log: TradeWriter | None = TradeWriter(options.trade_log) if options.trade_log \
            else None
        self.producer = Producer(self.market, options, lambda: self.connections, self._log)
        self.port = 0
        self.started_at = time.monotonic()

    # Lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await ws_create_server(
            self._route, self.options.host, self.options.port,
            enable_auto_ping=False, enable_auto_pong=False, websocket_handshake_timeout=10,
            logger_name="replay", max_frame_size=1024 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self.producer.run(), name="replay-producer"),
                       asyncio.create_task(self._heartbeat(), name="replay-heartbeat")]
        log.info("replay feed on %s (%s, symbols %s)", self.rest_url,
                 "as fast as clients read" if self.options.fast
                 else f"{self.options.rate:g} trades/s", ",".join(self.market.symbols))

    @property
    def ws_url(self) -> str:
        return f"ws://{self.options.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    async def stop(self) -> None:
        """Planned shutdown: serverShutdown to every client, close frames, then stop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        for connection in list(self.connections):
            connection.send_shutdown_notice()
            connection.close(WSCloseCode.GOING_AWAY, "server shutdown")
        if self._server is not None:
            self._server.close()
            await asyncio.sleep(0.05)  # lets the close frames reach the sockets
        if self._log is not None:
            self._log.close()
            self._log = None

    # Routing ----------------------------------------------------------------------------------
    def _route(self, request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        target = request.path.decode("latin-1")
        ip = request.headers.get("X-Forwarded-For", "127.0.0.1")
        try:
            wanted = parse_stream_path(target, self.options.max_streams)
        except ValueError as error:
            return _http(Response(400, f'{{"code":-1,"msg":"{error}"}}'.encode(),
                                  {"Content-Type": "application/json"}))
        if wanted is None:
            return _http(self.rest.handle(target, ip))
        if not self._admit(ip):
            return _http(Response(429, b'{"code":-1,"msg":"Too many new connections"}',
                                  {"Content-Type": "application/json", "Retry-After": "60"}))
        self.connections_total += 1
        return Connection(self.connections_total, wanted, self.options, self._opened,
                          self._closed, self.producer.wake)

    def _admit(self, ip: str) -> bool:
        now = time.monotonic()
        recent = self._handshakes.setdefault(ip, deque())
        while recent and now - recent[0] > CONNECTION_WINDOW_S:
            recent.popleft()
        if len(recent) >= self.options.max_connections_5m:
            return False
        recent.append(now)
        return True

    def _opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.producer.wake()

    def _closed(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.frames_sent_closed += connection.frames_sent

    async def _heartbeat(self) -> None:
        interval = max(min(self.options.ping_interval, self.options.pong_timeout) / 4, 0.02)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.ping(now)

    # FeedControl (used by /_replay/*) ---------------------------------------------------------
    def pause(self) -> None:
        self.producer.pause()

    def resume(self) -> None:
        self.producer.resume()

    def drop_connections(self) -> int:
        dropped = list(self.connections)
        for connection in dropped:
            connection.cut()
        return len(dropped)

    def stats(self) -> dict[str, object]:
        symbols: dict[str, object] = {}
        for symbol, tape in self.market.tapes.items():
            symbols[symbol] = {"stream": stream_name(symbol), "first_id": tape.first_id,
                               "last_id": tape.last_id, "produced": tape.produced,
                               "kept": len(tape)}
        live = sum(c.frames_sent for c in self.connections)
        return {
            "mode": "fast" if self.options.fast else "live",
            "rate": self.options.rate,
            "paused": self.producer.paused,
            "done": self.producer.done(),
            "connections": len(self.connections),
            "connections_total": self.connections_total,
            "frames_sent": self.frames_sent_closed + live,
            "duplicated": sum(c.faults.duplicated for c in self.connections),
            "corrupted": sum(c.faults.corrupted for c in self.connections),
            "rest_429": self.limiter.rejected_429,
            "rest_418": self.limiter.rejected_418,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "symbols": symbols,
        }
