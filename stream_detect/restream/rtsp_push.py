"""Pushing a stream's packets to an RTSP server (ANNOUNCE/RECORD over TCP), reconnecting when it goes away.

:class:`RtspPush` is an output of a stream's encoder. The encoder's thread
only queues packets; a thread of its own (``rtsp:<stream-id>``) connects,
copies them into FFmpeg's RTSP muxer (``rtsp_transport=tcp``: FFmpeg's and
most servers' listeners take TCP pushes, and firewalls want it) and, when
the server is gone (refused, reset, stalled past ``io_timeout_s``), closes
the session and connects again after a capped exponential backoff.

A server that stays connected but stops reading would block a write for as
long as TCP keeps the connection: a write that takes longer than
``io_timeout_s`` has its connection shut down from the encoder's thread
(:mod:`.stalls`), and the push reconnects.

Bounds: the queue holds at most ``max_queue_s`` seconds of video; past that
its oldest whole GOPs go (counted in ``packets_dropped``), so a dead or slow
server costs memory for that many seconds and never slows the encoder.
Each session starts at a keyframe with its timestamps rebased to 0; the
packets before it are dropped (counted).

Credentials in the URL are never logged or shown (:func:`~stream_detect.redact.redact_url`).
"""

from __future__ import annotations

import collections
import enum
import fractions
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import av

from ..redact import redact, redact_url
from .h264 import TIME_BASE, EncodedPacket
from .stalls import own_sockets, server_addresses, shut_down

log = logging.getLogger(__name__)


class PushState(enum.Enum):
    IDLE = "idle"  # nothing to send yet
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"  # waiting before the next attempt
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between connection attempts: ``initial_s``, growing by ``multiplier`` up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 4.0
    multiplier: float = 2.0

    def after(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class _Begin:
    width: int
    height: int
    rate: float


_Item = _Begin | EncodedPacket


class RtspPush:
    """One stream's push to ``url``.

    Args:
        stream_id: The stream.
        url: ``rtsp://[user:password@]host[:port]/path``.
        max_queue_s: Seconds of packets held while the server is slow or away.
        io_timeout_s: A connection or a write that takes longer fails (and is retried).
        backoff: Waits between attempts.
    """

    def __init__(self, stream_id: str, url: str, *, max_queue_s: float = 2.0, io_timeout_s: float = 5.0,
                 backoff: Backoff = Backoff()) -> None:
        self.name = "rtsp"
        self.stream_id = stream_id
        self.url = url
        self.shown_url = redact_url(url)
        self.max_queue_s = max_queue_s
        self.io_timeout_s = io_timeout_s
        self.backoff = backoff
        self.state = PushState.IDLE
        self.error: str | None = None
        self.connects = 0
        self.failures = 0
        self.packets_sent = 0
        self.packets_dropped = 0
        self.bytes_sent = 0
        self.stalls = 0  # writes that took longer than io_timeout_s: their connection was shut down
        self._session: _Session | None = None
        self._items: collections.deque[_Item] = collections.deque()
        self._wakeup = threading.Condition()
        self._closing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtsp:{stream_id}")  # started by begin()

    # -- the encoder's thread (quick) ---------------------------------------------

    def begin(self, width: int, height: int, rate: float) -> None:
        if self._thread.ident is None:
            self._thread.start()
        with self._wakeup:
            self._items.append(_Begin(width, height, rate))
            self._wakeup.notify_all()

    def on_packets(self, frame_index: int, packets: Sequence[EncodedPacket]) -> None:
        with self._wakeup:
            self._items.extend(packets)
            self._trim()
            self._wakeup.notify_all()
        self._unblock_stalled()

    def _unblock_stalled(self) -> None:
        """A write blocked past ``io_timeout_s``: its server reads nothing; its connection is shut down."""
        session = self._session
        if session is not None and session.stalled(self.io_timeout_s) and session.shut_down():
            self.stalls += 1
            log.warning("stream %s: the RTSP server %s stopped reading for %.0f s; reconnecting", self.stream_id,
                        self.shown_url, self.io_timeout_s)

    def end(self) -> None:
        pass  # the next time line begins with its own size: a new session

    def close(self) -> None:
        with self._wakeup:
            self._closing = True
            self._wakeup.notify_all()
        self._stop.set()
        if self._thread.ident is None:
            self.state = PushState.STOPPED
            return
        self._thread.join(self.io_timeout_s)
        session = self._session
        if self._thread.is_alive() and session is not None:  # a write still blocked: cut it short
            session.shut_down()
        self._thread.join(5)
        if self._thread.is_alive():
            log.error("stream %s: the RTSP push to %s did not stop", self.stream_id, self.shown_url)

    def describe(self) -> dict[str, Any]:
        with self._wakeup:
            queued = sum(1 for item in self._items if isinstance(item, EncodedPacket))
        return {"url": self.shown_url, "state": self.state.value, "error": self.error, "connects": self.connects,
                "failures": self.failures, "packets_sent": self.packets_sent, "packets_dropped": self.packets_dropped,
                "packets_queued": queued, "bytes_sent": self.bytes_sent, "stalls": self.stalls}

    def _trim(self) -> None:
        """Drops the oldest whole GOPs while the queue spans more than ``max_queue_s`` (under the lock):
        everything before the first keyframe inside the span (the newest keyframe at least), keeping the
        newest time line's size."""
        packets = [item for item in self._items if isinstance(item, EncodedPacket)]
        if len(packets) < 2 or packets[-1].t - packets[0].t <= self.max_queue_s:
            return
        horizon = packets[-1].t - self.max_queue_s
        keyframes = [index for index, item in enumerate(self._items)
                     if isinstance(item, EncodedPacket) and item.keyframe]
        if not keyframes:
            return
        start = next((index for index in keyframes if self._items[index].t >= horizon),  # type: ignore[union-attr]
                     keyframes[-1])
        size: _Begin | None = None
        for _ in range(start):
            head = self._items.popleft()
            if isinstance(head, _Begin):
                size = head
            else:
                self.packets_dropped += 1
        if size is not None:
            self._items.appendleft(size)

    # -- the push thread ------------------------------------------------------------

    def _next(self) -> _Item | None:
        with self._wakeup:
            while not self._items and not self._closing:
                self._wakeup.wait(0.5)
            return self._items.popleft() if self._items else None

    def _run(self) -> None:
        session: _Session | None = None
        size: _Begin | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                item = self._next()
                if item is None:
                    return
                if isinstance(item, _Begin):
                    size = item
                    if session is not None:
                        session.close()
                        session = self._session = None
                    continue
                if size is None:  # no time line begun: nothing to describe the stream with
                    self.packets_dropped += 1
                    continue
                if session is None:
                    if not item.keyframe:
                        self.packets_dropped += 1
                        continue
                    session = self._session = self._connect(size, failures)
                    if session is None:
                        failures += 1
                        self.packets_dropped += 1
                        continue
                try:
                    session.send(item)
                    if session.sent == 1:
                        self._connected()
                except Exception as error:
                    self._failed(error)
                    session.close()
                    session = self._session = None
                    failures += 1
                    self.packets_dropped += 1
                    continue
                failures = 0
                self.packets_sent += 1
                self.bytes_sent += len(item.data)
        finally:
            self._session = None
            if session is not None:
                session.close()
            self.state = PushState.STOPPED

    def _connect(self, size: _Begin, failures: int) -> _Session | None:
        if failures:
            self.state = PushState.RECONNECTING
            if self._stop.wait(self.backoff.after(failures)):
                return None
            self._drop_to_newest_keyframe()
        self.state = PushState.CONNECTING
        try:
            return _Session(self.url, size, self.io_timeout_s)
        except Exception as error:
            self._failed(error)
            return None

    def _connected(self) -> None:
        self.connects += 1
        again = " again" if self.connects > 1 else ""
        log.info("stream %s: pushing to %s%s", self.stream_id, self.shown_url, again)
        self.state, self.error = PushState.STREAMING, None

    def _drop_to_newest_keyframe(self) -> None:
        """After a wait: what queued meanwhile is old; start again at the newest keyframe."""
        with self._wakeup:
            keyframes = [i for i, item in enumerate(self._items)
                         if isinstance(item, EncodedPacket) and item.keyframe]
            if not keyframes:
                return
            for _ in range(keyframes[-1]):
                head = self._items.popleft()
                if isinstance(head, EncodedPacket):
                    self.packets_dropped += 1
                elif isinstance(head, _Begin):
                    self._items.appendleft(head)  # keep the newest size in front
                    break

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        detail = redact(f"{type(error).__name__}: {error}")
        repeated = detail == self.error
        self.error = detail
        self.state = PushState.RECONNECTING
        if repeated:
            log.debug("stream %s: RTSP push to %s failed again: %s", self.stream_id, self.shown_url, detail)
        else:
            log.warning("stream %s: RTSP push to %s failed: %s; reconnecting", self.stream_id, self.shown_url,
                        detail)


class _Session:
    """One RTSP RECORD session: packets' timestamps rebased to its first packet."""

    def __init__(self, url: str, size: _Begin, io_timeout_s: float) -> None:
        parts = urlsplit(url)
        self._addresses = server_addresses(parts.hostname or "", parts.port or 554)
        self._before = set(own_sockets(self._addresses).values())  # the process's other connections there
        self._sockets: dict[int, str] | None = None  # this session's, known once it has connected
        self._writing_since: float | None = None
        microseconds = str(round(io_timeout_s * 1_000_000))
        self._container: Any = av.open(url, "w", format="rtsp",
                                       options={"rtsp_transport": "tcp", "timeout": microseconds})
        rate = fractions.Fraction(size.rate).limit_denominator(1001)
        self._stream: Any = self._container.add_mux_stream("h264", rate=rate, width=size.width,
                                                           height=size.height)
        self._stream.time_base = TIME_BASE
        self._origin: int | None = None
        self._last = -1
        self.sent = 0

    def send(self, packet: EncodedPacket) -> None:
        if self._origin is None:
            self._origin = packet.pts
        pts = max(packet.pts - self._origin, self._last + 1)
        self._last = pts
        copy = av.Packet(packet.data)
        copy.pts = copy.dts = pts
        copy.time_base = TIME_BASE
        copy.is_keyframe = packet.keyframe
        copy.stream = self._stream
        self._writing_since = time.monotonic()
        try:
            self._container.mux(copy)  # the first one writes the header: ANNOUNCE, SETUP, RECORD
        finally:
            self._writing_since = None
        self.sent += 1
        if self._sockets is None:
            self._sockets = {fd: inode for fd, inode in own_sockets(self._addresses).items()
                             if inode not in self._before}

    def stalled(self, limit_s: float) -> bool:
        """A write has been blocked for more than ``limit_s`` (read from another thread)."""
        since = self._writing_since
        return since is not None and time.monotonic() - since > limit_s

    def shut_down(self) -> bool:
        """Shuts this session's connection down (a blocked write fails at once); False if it is not known."""
        sockets = self._sockets
        return sockets is not None and shut_down(sockets) > 0

    def close(self) -> None:
        try:
            self._container.close()
        except Exception as error:  # the server is gone already
            log.debug("closing an RTSP session: %s", redact(str(error)))
