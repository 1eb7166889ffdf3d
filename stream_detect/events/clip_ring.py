"""One stream's encoded video: an H.264 encoder and a ring of its latest packets.

:class:`EncodedRing` encodes each annotated frame once and keeps the packets
of the last ``keep_s`` seconds, starting at a keyframe, so anything that
wants the stream's recent video (a clip today; recording, RTSP and HLS
later) copies packets instead of encoding again.

Encoder settings, and why:

- **libx264, ``tune=zerolatency``**: no B-frames and no lookahead, so a
  packet comes out for every frame at once, decode order is presentation
  order, and a cut at any keyframe is a valid stream.
- **A keyframe at least every ``keyframe_s``**: the GOP is set on the codec
  context from the nominal rate, and a frame is also forced to be a keyframe
  once ``keyframe_s`` of its timestamps have passed since the last one (a
  source slower or faster than its nominal rate keeps the promise).
- **No global header**: every keyframe carries its SPS and PPS in band, so a
  file that starts at any keyframe decodes without the encoder's extradata.

Times: a frame is encoded at its stream time ``t`` (seconds: its pts, or its
capture time without one); packets carry ``t`` and ``pts`` in 1/90 000 s
ticks from the ring's first frame. ``t`` must increase; the owner decides
what to do with a frame that does not (:meth:`EncodedRing.accepts`).

Memory: the ring holds at most ``keep_s`` seconds (plus the GOP that
reaches back past it) and never more than ``max_bytes``; past that the
oldest whole GOPs go, counted in ``trimmed_bytes``.
"""

from __future__ import annotations

import collections
import fractions
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

TIME_BASE = fractions.Fraction(1, 90_000)


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded frame.

    Attributes:
        data: The H.264 access unit (Annex B; SPS and PPS in band on keyframes).
        pts: Presentation time in :data:`TIME_BASE` ticks from the ring's first frame (also its dts:
            the encoder makes no B-frames).
        t: The frame's stream time in seconds (pts, or capture time).
        keyframe: An IDR frame: a file may start here.
    """

    data: bytes
    pts: int
    t: float
    keyframe: bool


class EncodedRing:
    """Encodes one stream's frames and keeps its latest packets.

    Called from one thread (the stream's encoder thread).

    Args:
        width, height: Frame size; every frame must have it (an odd size loses its last column or row:
            yuv420p needs an even one).
        rate: The stream's nominal frame rate (sets the GOP).
        keep_s: Seconds of packets kept behind the newest.
        keyframe_s: Longest time between keyframes, in seconds of the frames' timestamps.
        max_bytes: Packet bytes held at most.
        preset: libx264's speed preset.
    """

    def __init__(self, width: int, height: int, rate: float, keep_s: float, *, keyframe_s: float = 1.0,
                 max_bytes: int = 32 * 1024 * 1024, preset: str = "veryfast") -> None:
        if width < 2 or height < 2:
            raise ValueError(f"a frame of {width}x{height} is too small to encode")
        self.source_width, self.source_height = width, height
        self.width, self.height = width - width % 2, height - height % 2  # the encoded size
        self.keep_s = keep_s
        self.keyframe_s = keyframe_s
        self.max_bytes = max_bytes
        nominal = fractions.Fraction(rate).limit_denominator(1001)
        self.gop = max(1, math.floor(float(nominal) * keyframe_s))
        codec: Any = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = TIME_BASE
        codec.framerate = nominal
        codec.gop_size = self.gop
        codec.options = {"preset": preset, "tune": "zerolatency", "forced-idr": "1"}
        self._codec = codec
        self._packets: collections.deque[EncodedPacket] = collections.deque()
        self._origin_t: float | None = None
        self._last_t: float | None = None
        self._last_keyframe_t: float | None = None
        self.bytes = 0
        self.frames = 0
        self.trimmed_bytes = 0
        self._flushed = False

    @property
    def last_t(self) -> float | None:
        """The newest encoded frame's time."""
        return self._last_t

    def accepts(self, image: np.ndarray, t: float) -> bool:
        """Whether a frame of this size at ``t`` can follow the frames encoded so far."""
        size_fits = image.shape[0] == self.source_height and image.shape[1] == self.source_width
        return size_fits and not self._flushed and (self._last_t is None or t > self._last_t)

    def encode(self, image: np.ndarray, t: float) -> list[EncodedPacket]:
        """Encodes one ``(H, W, 3) uint8`` RGB frame at stream time ``t``; returns the packets it gave
        (also kept in the ring).

        Raises:
            ValueError: the frame does not fit (see :meth:`accepts`).
        """
        if not self.accepts(image, t):
            raise ValueError(f"a {image.shape[1]}x{image.shape[0]} frame at t={t:.6f} cannot follow "
                             f"{self.source_width}x{self.source_height} at t={self._last_t}")
        if self._origin_t is None:
            self._origin_t = t
        if (self.width, self.height) != (self.source_width, self.source_height):
            image = np.ascontiguousarray(image[:self.height, :self.width])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = round((t - self._origin_t) / TIME_BASE)
        frame.time_base = TIME_BASE
        if self._last_keyframe_t is not None and t - self._last_keyframe_t >= self.keyframe_s - 1e-6:
            frame.pict_type = av.video.frame.PictureType.I
        self._last_t = t
        self.frames += 1
        return self._keep(self._codec.encode(frame))

    def flush(self) -> list[EncodedPacket]:
        """Drains the encoder (the frames it still holds); nothing can be encoded after."""
        if self._flushed:
            return []
        self._flushed = True
        return self._keep(self._codec.encode(None))

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

    def _keep(self, packets: list[Any]) -> list[EncodedPacket]:
        origin = self._origin_t if self._origin_t is not None else 0.0
        kept = []
        for packet in packets:
            pts = int(packet.pts)
            encoded = EncodedPacket(bytes(packet), pts, origin + float(pts * TIME_BASE), bool(packet.is_keyframe))
            if encoded.keyframe:
                self._last_keyframe_t = encoded.t
            self._packets.append(encoded)
            self.bytes += len(encoded.data)
            kept.append(encoded)
        if kept:
            self._trim()
        return kept

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
