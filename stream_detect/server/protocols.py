"""uvicorn's HTTP and websocket protocols, hardened against peers that misbehave.

uvicorn leaves a few doors open that a long-running analyzer must close. The
guards here work on the connection itself, below the application, so they
hold whatever a route does and whatever a client subscribed to:

- **Request headers have a deadline.** uvicorn waits for ever for the headers
  of a connection's first request: a silent TCP client or a slowloris holds a
  socket until it leaves. Every connection gets ``header_timeout_s`` to finish
  its request headers (again after each response on a kept-alive one).
- **The kernel send buffer is bounded** (``SEND_BUFFER_BYTES``). On loopback,
  TCP autotuning let a peer that does not read absorb megabytes before a send
  blocked, so no timeout ever fired. Nagle is off (``TCP_NODELAY``) on every
  connection, however its listening socket was made.
- **A write that stalls is a dead peer.** When the transport's buffer passes
  its high-water mark the transport pauses writing; a connection still paused
  ``send_timeout_s`` later, its buffer no smaller, is aborted (MJPEG viewers
  and websocket clients that stopped reading, a snapshot sent to a peer that
  never reads); a slow peer that still drains it is given more time.
- **Automatic replies are bounded.** The websocket protocol answers every
  PING with a PONG without looking at back-pressure, so a client flooding
  pings and never reading grew the server by hundreds of megabytes. Here a
  websocket connection that cannot write is not read from either (its pings
  wait in the kernel, costing the server nothing), and one whose outgoing
  buffer still passes ``MAX_PENDING_WRITE_BYTES`` is aborted at once.
- **A missed keepalive aborts and tells the application.** uvicorn answers a
  keepalive timeout with ``transport.close()``, which waits for ever to flush
  to a peer that does not read, and never reports a disconnect, so the
  handler (and its connection slot) lived on. Here the transport is aborted;
  the application receives ``websocket.disconnect`` at once.
- **A websocket connection still open** ``WS_RESET_AFTER_S`` after the
  application is done with it is reset, for the same flushing reason.
- **Invalid UTF-8 in a text frame** closes with 1007 as the protocol says,
  with one log line instead of a traceback per connection.

Every abort is reported through :class:`ConnectionEvents` (metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

try:  # the kernel's send queue (SIOCOUTQ, which is TIOCOUTQ): Linux and most Unixes
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - elsewhere the transport's buffer alone is used
    _OUTQ = None

log = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 128 * 1024
MAX_PENDING_WRITE_BYTES = 1024 * 1024
WS_RESET_AFTER_S = 2.0
WS_SOCKET_BUFFER_BYTES = 32 * 1024


@dataclass(frozen=True)
class ConnectionEvents:
    """What the protocols report. ``on_abort(kind, path)`` is called on the event loop.

    ``kind`` is ``"websocket"`` or ``"http"``; ``path`` the request's path.
    """

    on_abort: Callable[[str, str], None] = lambda kind, path: None


def pending_bytes(transport: Any) -> int:
    """Bytes written but not yet taken by the peer: the transport's buffer and the kernel's send queue.

    The kernel's queue counts: a peer that reads slowly empties it long before the kernel lets the
    transport write again (it waits for a third of the send buffer to be free), so the transport's
    buffer alone can stand still for seconds while the peer reads all along.
    """
    pending = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and _OUTQ is not None:
        with contextlib.suppress(OSError, ValueError):
            pending += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    return pending


def _bound_send_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # a socket already closing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            # Responses are written in pieces (headers, then body): with Nagle on, a kept-alive
            # connection's second piece waited ~40 ms for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _WriteStallGuard:
    """Aborts a transport paused for writing that sends nothing for ``timeout_s``.

    A slow peer that still reads (the buffer shrinks between checks) is given
    another ``timeout_s``; one whose buffer did not shrink is dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, abort: Callable[[str], None],
                 buffered: Callable[[], int]) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._abort = abort
        self._buffered = buffered
        self._timer: asyncio.TimerHandle | None = None
        self._last_size = 0

    def paused(self) -> None:
        if self._timer is None:
            self._last_size = self._buffered()
            self._timer = self._loop.call_later(self._timeout_s, self._fire)

    def resumed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        size = self._buffered()
        if size < self._last_size:  # it drains, slowly: look again later
            self._last_size = size
            self._timer = self._loop.call_later(self._timeout_s, self._fire)
            return
        self._timer = None
        self._abort(f"not reading for {self._timeout_s:g} s")


class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    """uvicorn's HTTP protocol with a header deadline, a bounded send buffer and a write-stall abort.

    ``build_server`` makes a subclass with the server's settings as class attributes.
    """

    header_timeout_s = 10.0
    send_timeout_s = 2.0
    events = ConnectionEvents()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        _bound_send_buffer(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._stall = _WriteStallGuard(self.loop, self.send_timeout_s, self._abort_stalled,
                                       lambda: pending_bytes(transport))
        self._arm_header_deadline()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._cancel_header_deadline()  # the timer would keep this protocol alive for its whole wait
        self._stall.resumed()
        super().handle_websocket_upgrade(*args)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall.paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stall.resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        stall = getattr(self, "_stall", None)
        if stall is not None:
            stall.resumed()
        super().connection_lost(exc)

    def _abort_stalled(self, why: str) -> None:
        if self.transport.get_protocol() is not self:  # upgraded to a websocket meanwhile
            return
        path = self.cycle.scope.get("path", "") if self.cycle is not None else ""
        log.info("HTTP client dropped: %s (%s)", why, path[:100])
        self.transport.abort()
        self.events.on_abort("http", path)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        waiting_on = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue, waiting_on)

    def _cancel_header_deadline(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_overdue(self, waiting_on: object) -> None:
        self._header_timer = None
        if self.cycle is not waiting_on:  # a request's headers arrived meanwhile
            return
        if self.transport.get_protocol() is not self or self.transport.is_closing():  # upgraded or closing
            return
        log.info("closing a connection that sent no complete request headers within %.0f s",
                 self.header_timeout_s)
        self.transport.abort()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol with the guards of the module docstring."""

    send_timeout_s = 2.0
    events = ConnectionEvents()

    _reset_timer: asyncio.TimerHandle | None = None
    _stall: _WriteStallGuard | None = None
    _aborted = False
    _write_blocked = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                # Messages are small both ways. Small kernel buffers keep what one read hands the
                # parser small (a flood is parsed in slices between other connections' work) and
                # make a peer that does not read pause the transport sooner.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WS_SOCKET_BUFFER_BYTES)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WS_SOCKET_BUFFER_BYTES)
        self._stall = _WriteStallGuard(self.loop, self.send_timeout_s, self._abort, lambda: pending_bytes(transport))

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A denial response ends the handshake; uvicorn would otherwise log
            # "returned without completing handshake" at ERROR for every refusal.
            self.handshake_complete = True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._check_pending_writes()

    def handle_ping(self) -> None:
        if self._aborted:
            return
        super().handle_ping()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_blocked = True
        self.transport.pause_reading()  # a peer that does not read gets nothing more read from it
        if self._stall is not None:
            self._stall.paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_blocked = False
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()
        if self._stall is not None:
            self._stall.resumed()

    async def receive(self) -> Any:
        message = await super().receive()
        if self._write_blocked and not self.transport.is_closing():
            self.transport.pause_reading()  # uvicorn resumed reading when the app took a message
        return message

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self._abort("no answer to a keepalive ping")

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                bytes(data).decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("websocket client sent a text message that is not UTF-8: closing with 1007")
                self.conn.send_close(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            if not self.disconnected:
                self._reset_timer = self.loop.call_later(WS_RESET_AFTER_S, self._reset_if_open)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reset_timer is not None:  # release the connection (and its compressor) at once
            self._reset_timer.cancel()
            self._reset_timer = None
        if self._stall is not None:
            self._stall.resumed()
        super().connection_lost(exc)

    def _check_pending_writes(self) -> None:
        if not self._aborted and self.transport.get_write_buffer_size() > MAX_PENDING_WRITE_BYTES:
            self._abort(f"more than {MAX_PENDING_WRITE_BYTES // 1024} KiB waiting to be sent")

    def _abort(self, why: str) -> None:
        """Drops the connection at once; the application receives ``websocket.disconnect``."""
        if self._aborted or self.disconnected:
            return
        self._aborted = True
        if self.transport.is_closing():  # the application already let it go (and counted it)
            self.transport.abort()
            return
        log.warning("websocket client dropped: %s", why)
        self.transport.abort()
        self.events.on_abort("websocket", getattr(self, "scope", {}).get("path", ""))

    def _reset_if_open(self) -> None:
        self._reset_timer = None
        if not self.disconnected:
            self.transport.abort()
