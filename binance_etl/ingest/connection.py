"""One supervised WebSocket connection carrying a group of combined streams (picows).

The supervisor keeps exactly one live connection for its group, replacing it when it drops
(capped exponential back-off with jitter), when it has been silent longer than the watchdog
allows (no trade and no server ping), when the server announces `serverShutdown`, and before
Binance's 24-hour cut. A replacement for a live connection is opened and connected *before*
the old one is closed, so the two overlap and nothing is missed; the duplicates of the
overlap are dropped by the trade-id bookkeeping (and would be absorbed by the database).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable

from picows import WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from binance_etl.backoff import Backoff
from binance_etl.ingest.streams import StreamGroup
from binance_etl.ingest.trade import control_event

logger = logging.getLogger(__name__)

PayloadHandler = Callable[[memoryview], bool]
_TEXT = WSMsgType.TEXT  # False: a valid frame that is not a trade


class _Listener(WSListener):
    """Feeds text frames to the handler; answers pings; notes when the server last spoke."""

    def __init__(self, handler: PayloadHandler, on_control: Callable[[str], None]) -> None:
        self.handler = handler
        self.on_control = on_control
        self.heard = 0  # frames from the server (trades, events, pings): the watchdog's pulse
        self.transport: WSTransport | None = None
        self.disconnected = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is _TEXT:
            self.heard += 1
            if not self.handler(frame.get_payload_as_memoryview()):
                event = control_event(frame.get_payload_as_bytes())
                if event:
                    self.on_control(event)
        elif msg_type is WSMsgType.PING:
            self.heard += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()


class StreamConnection:
    """Supervises the connection of one StreamGroup until `stop()`."""

    def __init__(
        self,
        group: StreamGroup,
        handler: PayloadHandler,
        on_connected: Callable[[tuple[str, ...], bool], None],
        *,
        silence_seconds: float = 60.0,
        max_age_seconds: float = 23 * 3600.0,
        reconnect_max_seconds: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.group = group
        self._handler = handler
        self._on_connected = on_connected
        self.silence_seconds = silence_seconds
        self.max_age_seconds = max_age_seconds
        self.connect_timeout = connect_timeout
        self._backoff = Backoff(0.5, reconnect_max_seconds)
        self._ssl = ssl.create_default_context() if group.url.startswith("wss://") else None
        self._stop = asyncio.Event()
        self._renew = asyncio.Event()
        self._paused = False
        self.current: _Listener | None = None
        self.connects = 0
        self.drops = 0
        self.renewals = 0
        self.watchdog_kills = 0

    # -- control from the streamer ---------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        if self.current is not None and self.current.transport is not None:
            self._pause(self.current)  # stop reading at once; the close follows
            self.current.transport.disconnect()

    def set_paused(self, paused: bool) -> None:
        """Stop (or resume) reading from the socket: back-pressure when memory is full."""
        self._paused = paused
        if self.current is not None:
            if paused:
                self._pause(self.current)
            else:
                self._resume(self.current)

    @staticmethod
    def _pause(listener: _Listener) -> None:
        if listener.transport is not None:
            listener.transport.underlying_transport.pause_reading()

    def _resume(self, listener: _Listener) -> None:
        if listener.transport is not None and not listener.transport.is_disconnected:
            listener.transport.underlying_transport.resume_reading()

    def renew(self) -> None:
        """Open a replacement now (e.g. on `serverShutdown`), overlapping the current one."""
        self._renew.set()

    # -- supervision -----------------------------------------------------------------------

    def _on_control(self, event: str) -> None:
        if event == "serverShutdown":
            logger.info("%s: server announced shutdown; renewing the connection", self.name)
            self.renew()

    @property
    def name(self) -> str:
        symbols = self.group.symbols
        return f"streams[{symbols[0]}{'…' if len(symbols) > 1 else ''} x{len(symbols)}]"

    async def _open(self) -> _Listener:
        listener = _Listener(self._handler, self._on_control)
        await asyncio.wait_for(
            ws_connect(
                lambda: listener,
                self.group.url,
                ssl_context=self._ssl,
                enable_auto_pong=False,  # pings are answered (and counted) by the listener
                enable_auto_ping=True,  # our own pings detect a dead TCP path
                auto_ping_idle_timeout=max(1.0, self.silence_seconds / 2),
                auto_ping_reply_timeout=max(1.0, self.silence_seconds / 2),
                websocket_handshake_timeout=self.connect_timeout,
            ),
            self.connect_timeout,
        )
        self.connects += 1
        if self._paused:
            self._pause(listener)
        return listener

    async def _open_with_backoff(self) -> _Listener | None:
        while not self._stop.is_set():
            try:
                listener = await self._open()
            except (OSError, TimeoutError, WSError) as error:
                delay = self._backoff.next_delay()
                logger.warning("%s: connect failed (%r); retry in %.1fs", self.name, error, delay)
            else:
                return listener
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass
        return None

    async def run(self) -> None:
        listener = await self._open_with_backoff()
        overlapped = False  # True when the previous connection stayed open until this one was up
        while listener is not None and not self._stop.is_set():
            self.current = listener
            self._on_connected(self.group.symbols, overlapped)
            logger.info("%s: connected%s", self.name, " (overlapping)" if overlapped else "")
            reason = await self._watch(listener)
            if self._stop.is_set():
                break
            if reason in ("renew", "silent"):
                # Overlap: connect the replacement first, then close the old one.
                replacement = await self._open_with_backoff()
                # A silent socket may have missed trades: only a live one makes a clean overlap.
                overlapped = reason == "renew" and not listener.disconnected.is_set()
                if listener.transport is not None:
                    listener.transport.disconnect()
                listener = replacement
                continue
            self.drops += 1
            self.current = None
            delay = self._backoff.next_delay()
            logger.warning("%s: connection lost; reconnecting in %.1fs", self.name, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                break
            except TimeoutError:
                listener = await self._open_with_backoff()
                overlapped = False
        if self.current is not None and self.current.transport is not None:
            self.current.transport.disconnect()
            await self.current.disconnected.wait()

    async def _watch(self, listener: _Listener) -> str:
        """Wait until the connection must go: 'stop', 'dropped', 'silent' or 'renew'."""
        opened = time.monotonic()
        # Jitter spreads renewals of many connections; they all stay under the 24 h cut.
        lifetime = self.max_age_seconds * random.uniform(0.95, 1.0)
        reported_healthy = False
        pulse, last_heard = listener.heard, opened
        while True:
            if self._stop.is_set():
                return "stop"
            if listener.disconnected.is_set():
                return "dropped"
            now = time.monotonic()
            if listener.heard != pulse or self._paused:
                pulse, last_heard = listener.heard, now
            if not reported_healthy and now - opened > 5.0:
                self._backoff.reset()  # stayed up a while: next failure starts small again
                reported_healthy = True
            if self._renew.is_set() or now - opened >= lifetime:
                self._renew.clear()
                self.renewals += 1
                logger.info("%s: renewing connection (age %.0fs)", self.name, now - opened)
                return "renew"
            if now - last_heard > self.silence_seconds:
                self.watchdog_kills += 1
                logger.warning(
                    "%s: silent for %.1fs; replacing the connection", self.name, now - last_heard
                )
                return "silent"
            try:
                await asyncio.wait_for(listener.disconnected.wait(), 0.25)
            except TimeoutError:
                pass
