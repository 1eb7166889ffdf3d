"""One clip on disk: encoded packets copied into an MP4, renamed into place when complete.

The file is written under a temporary name (``.<name>.partial``, hidden, as
the snapshots' temporary files are; :mod:`.media`'s sweep knows it) and renamed
to its final name only once the muxer has finished it, so a reader never
sees half a clip. It is a plain MP4 with ``faststart`` (the movie header
moved to the front on close: a browser starts playing before the whole file
has arrived). Packets are copied as they are, never re-encoded; their
timestamps are rebased so the clip starts at 0. It starts at a keyframe:
packets before the first keyframe it is given are skipped.
"""

from __future__ import annotations

import contextlib
import fractions
from pathlib import Path
from typing import Any

import av

from .clip_ring import TIME_BASE, EncodedPacket

PARTIAL = ".partial"


class ClipFile:
    """An MP4 being written from copied packets.

    Args:
        path: The final path; the file is written to ``.<name>.partial`` beside it until :meth:`close`.
        width, height: The packets' frame size.
        rate: The nominal frame rate (the duration given to the last frame).
    """

    def __init__(self, path: Path, width: int, height: int, rate: float) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}{PARTIAL}")
        self.width, self.height = width, height
        self._rate = fractions.Fraction(rate).limit_denominator(1001)
        self._frame_ticks = max(1, round(1 / (self._rate * TIME_BASE)))
        self._container: Any = None
        self._stream: Any = None
        self._origin: int | None = None
        self._held: EncodedPacket | None = None  # written once the next one gives its duration
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.packets = 0
        self._closed = False

    @property
    def started(self) -> bool:
        """A keyframe has arrived: the clip has begun."""
        return self._origin is not None

    def append(self, packet: EncodedPacket) -> None:
        """Copies one packet in (packets before the first keyframe are skipped)."""
        if self._closed:
            raise ValueError(f"clip {self.path.name} is closed")
        if self._origin is None:
            if not packet.keyframe:
                return
            self._open()
            self._origin = packet.pts
            self.first_t = packet.t
        if self._held is not None:
            self._mux(self._held, packet.pts - self._held.pts)
        self._held = packet
        self.last_t = packet.t

    def close(self) -> Path | None:
        """Finishes the file and renames it into place; None (and no file) if no keyframe came."""
        if self._closed:
            return self.path if self._origin is not None else None
        self._closed = True
        if self._container is None:
            return None
        try:
            if self._held is not None:
                self._mux(self._held, self._frame_ticks)
                self._held = None
            self._container.close()
        except BaseException:
            self._discard()
            raise
        self.partial.replace(self.path)
        return self.path

    def abandon(self) -> None:
        """Stops and removes the partial file (a failure: nothing half-written stays)."""
        self._closed = True
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self._discard()

    def _open(self) -> None:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.partial), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_mux_stream("h264", rate=self._rate, width=self.width, height=self.height)
        stream.time_base = TIME_BASE
        self._stream = stream

    def _mux(self, packet: EncodedPacket, duration: int) -> None:
        assert self._origin is not None
        self._container.mux(packet.copy_for(self._stream, self._origin, duration))
        self.packets += 1

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self.partial.unlink()
