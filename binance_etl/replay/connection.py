"""One client WebSocket connection: its subscriptions, control messages and Binance's rules
(message rate, pings, lifetime), plus the faults the feed was asked to inject."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from binance_etl.replay.broadcast import Batch
from binance_etl.replay.control import StreamRequest, Subscription
from binance_etl.replay.faults import FaultPlan
from binance_etl.replay.frames import server_shutdown_event

if TYPE_CHECKING:
    from binance_etl.replay.options import FeedOptions

log = logging.getLogger(__name__)

WRITE_HIGH_WATER = 4 * 1024 * 1024
CLOSE_GRACE_S = 1.0
# A client this far behind is cut (Binance drops slow consumers too); bounds the feed's memory.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Connection(WSListener):  # type: ignore[misc]
    """The server side of one client. Callbacks run on the feed's event loop."""

    def __init__(self, number: int, request: StreamRequest, options: FeedOptions,
                 on_open: Callable[[Connection], None],
                 on_close: Callable[[Connection], None], wake: Callable[[], None]) -> None:
        self.number = number
        self.options = options
        self.subscription = Subscription.from_request(request, options.max_streams)
        self._on_open = on_open
        self._on_close = on_close
        self._wake = wake
        self.transport: WSTransport | None = None
        self.writable = True
        self.closing = False
        self.frames_sent = 0
        self.silent_until = 0.0
        self.faults = FaultPlan(options.seed * 1_000_003 + number, options.duplicate_fraction,
                                options.corrupt_fraction)
        self._second = 0
        self._messages_this_second = 0
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self.unanswered_since: float | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self.opened_at = time.monotonic()

    # picows callbacks -------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        loop = asyncio.get_running_loop()
        options = self.options
        notice_at = max(options.max_lifetime - options.shutdown_notice, 0.0)
        self._timers.append(loop.call_later(notice_at, self.send_shutdown_notice))
        self._timers.append(loop.call_later(options.max_lifetime, self.close,
                                            WSCloseCode.GOING_AWAY, "connection lifetime"))
        if options.drop_after_seconds is not None:
            self._timers.append(loop.call_later(options.drop_after_seconds, self.cut))
        if options.silent_after is not None:
            self._timers.append(loop.call_later(options.silent_after, self._go_silent))
        self._on_open(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closing = True
        for timer in self._timers:
            timer.cancel()
        self._on_close(self)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._wake()  # a fast-mode producer may be waiting for this socket

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self.closing = True  # no more trades after the client's close frame
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if self.closing or not self._count_message():
            return
        if kind == WSMsgType.TEXT:
            self._control(frame.get_payload_as_bytes())
        elif kind == WSMsgType.PING:
            if not self.silent:
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind == WSMsgType.PONG:
            # Only a pong that echoes our last ping counts; unsolicited pongs do not.
            if frame.get_payload_as_bytes() == self._ping_payload:
                self.unanswered_since = None

    # Binance's connection rules ---------------------------------------------------------------
    def _count_message(self) -> bool:
        second = int(time.monotonic())
        if second != self._second:
            self._second = second
            self._messages_this_second = 0
        self._messages_this_second += 1
        if self._messages_this_second > self.options.control_rate:
            log.info("connection %s: more than %s messages in a second, dropping it",
                     self.number, self.options.control_rate)
            self.close(WSCloseCode.POLICY_VIOLATION, "Too many requests")
            return False
        return True

    @property
    def silent(self) -> bool:
        return self.silent_until > time.monotonic()

    def _go_silent(self) -> None:
        self.silent_until = time.monotonic() + self.options.silent_for
        log.info("connection %s: silent for %ss", self.number, self.options.silent_for)

    def ping(self, now: float) -> None:
        """Called by the feed's heartbeat: ping when due, drop when a ping stays unanswered."""
        if self.closing or self.transport is None:
            return
        if self.unanswered_since is not None and now - self.unanswered_since > \
                self.options.pong_timeout:
            log.info("connection %s: no pong within %ss, dropping it", self.number,
                     self.options.pong_timeout)
            self.close(WSCloseCode.POLICY_VIOLATION, "Pong timeout")
            return
        if self.silent or now - self._ping_sent_at < self.options.ping_interval:
            return
        self._ping_payload = str(_now_ms()).encode()
        self._ping_sent_at = now
        if self.unanswered_since is None:
            self.unanswered_since = now
        self.transport.send_ping(self._ping_payload)

    def send_shutdown_notice(self) -> None:
        if not self.closing and self.transport is not None:
            self.transport.send(WSMsgType.TEXT, server_shutdown_event(_now_ms()))

    def close(self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "") -> None:
        """A clean close: close frame, the client's close frame back (or a short grace
        period), then disconnect. Closing at once could reset the TCP connection while the
        client's last messages are unread, and the reset would swallow our close frame."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.transport.send_close(code, reason.encode())
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(CLOSE_GRACE_S, self.transport.disconnect))

    def cut(self) -> None:
        """A network failure: the TCP connection goes away without a close frame, and whatever
        was still buffered for the client is lost."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.transport.underlying_transport.abort()

    # Trades -----------------------------------------------------------------------------------
    def deliver(self, batches: list[Batch]) -> None:
        """Write this step's frames for the client's streams, many frames per write."""
        if self.closing or self.transport is None or self.silent:
            return
        sub = self.subscription
        streams = sub.streams
        mine = [batch for batch in batches if batch.stream in streams and batch.trades]
        if not mine:
            return
        if self.transport.underlying_transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
            log.warning("connection %s: more than %s bytes unread, cutting it", self.number,
                        MAX_BACKLOG_BYTES)
            self.cut()
            return
        limit = self.options.drop_after_frames
        if not self.faults.active and limit is None:
            data = b"".join([batch.joined(sub.envelope, sub.micro) for batch in mine])
            self.frames_sent += sum(len(batch.trades) for batch in mine)
            self.transport.underlying_transport.write(data)
            return
        out: list[bytes] = []
        for batch in mine:
            stream = batch.stream if sub.envelope else None
            frames = batch.frames(sub.envelope, sub.micro)
            for frame, trade in zip(frames, batch.trades, strict=True):
                out.extend(self.faults.apply(frame, trade, batch.event_ms, stream))
        if limit is not None and self.frames_sent + len(out) >= limit:
            out = out[: max(limit - self.frames_sent, 0)]
            self.frames_sent += len(out)
            underlying = self.transport.underlying_transport
            underlying.write(b"".join(out))
            self.closing = True
            log.info("connection %s: dropping after %s frames", self.number, limit)
            underlying.close()  # flushes what was written, then FIN without a close frame
            return
        self.frames_sent += len(out)
        self.transport.underlying_transport.write(b"".join(out))

    # Control messages -------------------------------------------------------------------------
    def _control(self, payload: bytes) -> None:
        reply = self.subscription.handle(payload)
        if self.transport is not None and not self.silent:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(reply))
        self._wake()  # a new subscription may be what a fast-mode producer waits for
