"""Crash-safe MP4 segments from copied H.264 packets (the stream's one encoder made them).

The file is a fragmented MP4 (``frag_keyframe+empty_moov``, flushed per
packet), as :mod:`.writer` explains: a SIGKILL or a power loss costs only the
fragment being written. Packets are copied, never re-encoded; the first must
be a keyframe, and timestamps are rebased so the file starts at 0.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av

from ..restream.h264 import TIME_BASE, EncodedPacket
from .writer import FRAGMENTED


class PacketWriter:
    """One fragmented MP4 written packet by packet.

    Args:
        path: Output file.
        width, height: The packets' frame size.
        rate: The nominal frame rate (the last frame's duration).
    """

    def __init__(self, path: Path, width: int, height: int, rate: float) -> None:
        self.path = path
        self.width, self.height = width, height
        self._rate = fractions.Fraction(rate).limit_denominator(1001)
        self._frame_ticks = max(1, round(1 / (self._rate * TIME_BASE)))
        self._container: Any = av.open(str(path), "w", format="mp4",
                                       options={"movflags": FRAGMENTED, "flush_packets": "1"})
        self._stream: Any = self._container.add_mux_stream("h264", rate=self._rate, width=width, height=height)
        self._stream.time_base = TIME_BASE
        self._origin: int | None = None
        self._held: EncodedPacket | None = None  # written once the next one gives its duration
        self.frames = 0
        self._closed = False
        self._broken = False  # a write failed (a full disk): the muxer is not written to again

    def write(self, packet: EncodedPacket) -> bool:
        """Copies one packet in; False (nothing written) for one that does not advance the time or a
        first packet that is not a keyframe."""
        if self._origin is None:
            if not packet.keyframe:
                return False
            self._origin = packet.pts
        if self._held is not None:
            if packet.pts <= self._held.pts:
                return False
            self._mux(self._held, packet.pts - self._held.pts)
        self._held = packet
        self.frames += 1
        return True

    def close(self, write_last: bool = True) -> None:
        """Writes the last packet (unless ``write_last`` is False, or a write has failed) and closes the file.

        After a failed write (a full disk) nothing more is muxed: FFmpeg's muxer is in an undefined
        state then, and muxing into it was seen to crash the process. What reached the disk stays
        readable (fragmented MP4).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._held is not None and write_last and not self._broken:
                self._mux(self._held, self._frame_ticks)
            self._held = None
        finally:
            self._container.close()

    def _mux(self, packet: EncodedPacket, duration: int) -> None:
        assert self._origin is not None
        if self._broken:
            raise OSError("an earlier write to this file failed")
        try:
            self._container.mux(packet.copy_for(self._stream, self._origin, duration))
        except Exception:
            self._broken = True
            raise
