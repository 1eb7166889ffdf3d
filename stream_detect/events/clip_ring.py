"""One stream's recent encoded video: a ring of the latest packets of its one encoder.

:class:`PacketRing` keeps the packets of the last ``keep_s`` seconds of a
time line of the stream's encoder (:mod:`stream_detect.restream.encoder`,
which encodes each annotated frame once for recording, clips, RTSP and
HLS), starting at a keyframe, so a clip copies packets instead of encoding
again. The encoder's settings (no B-frames, a keyframe at least every
second, SPS and PPS in band) make any keyframe a valid start
(:mod:`stream_detect.restream.h264`).

Times: packets carry their stream time ``t`` and ``pts`` in 1/90 000 s
ticks from their time line's first frame.

Memory: the ring holds at most ``keep_s`` seconds (plus the GOP that
reaches back past it) and never more than ``max_bytes``; past that the
oldest whole GOPs go, counted in ``trimmed_bytes``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

from ..restream.h264 import TIME_BASE, EncodedPacket

__all__ = ["TIME_BASE", "EncodedPacket", "PacketRing"]


class PacketRing:
    """The latest packets of one time line of a stream's encoder.

    Called from one thread (the stream's clip thread).

    Args:
        width, height: The encoded frame size.
        keep_s: Seconds of packets kept behind the newest.
        max_bytes: Packet bytes held at most.
    """

    def __init__(self, width: int, height: int, keep_s: float, *, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.width, self.height = width, height
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self._packets: collections.deque[EncodedPacket] = collections.deque()
        self.bytes = 0
        self.trimmed_bytes = 0

    @property
    def last_t(self) -> float | None:
        """The newest packet's time."""
        return self._packets[-1].t if self._packets else None

    def add(self, packets: Iterable[EncodedPacket]) -> None:
        """Keeps ``packets`` (in order, after those kept), then trims."""
        added = False
        for packet in packets:
            self._packets.append(packet)
            self.bytes += len(packet.data)
            added = True
        if added:
            self._trim()

    def since(self, t: float) -> list[EncodedPacket]:
        """The packets from the last keyframe at or before ``t`` (or from the ring's start) on."""
        start = 0
        for index, packet in enumerate(self._packets):
            if packet.t > t:
                break
            if packet.keyframe:
                start = index
        return list(self._packets)[start:]

    def __iter__(self) -> Iterator[EncodedPacket]:
        return iter(list(self._packets))

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def span_s(self) -> float:
        """Seconds from the ring's first packet to its newest."""
        if not self._packets:
            return 0.0
        return self._packets[-1].t - self._packets[0].t

    def _trim(self) -> None:
        """Drops whole GOPs from the front: those that end before ``newest - keep_s``, then any that
        leave more than ``max_bytes`` (the newest GOP always stays)."""
        horizon = self._packets[-1].t - self.keep_s
        while True:
            next_key = self._second_keyframe()
            if next_key is None:
                return
            too_old = self._packets[next_key].t <= horizon
            too_big = self.bytes > self.max_bytes
            if not (too_old or too_big):
                return
            for _ in range(next_key):
                dropped = self._packets.popleft()
                self.bytes -= len(dropped.data)
                if too_big and not too_old:
                    self.trimmed_bytes += len(dropped.data)

    def _second_keyframe(self) -> int | None:
        for index, packet in enumerate(self._packets):
            if index and packet.keyframe:
                return index
        return None
