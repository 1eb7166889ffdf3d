"""HLS of a stream's encoded packets: MPEG-TS segments in memory and a sliding playlist.

:class:`HlsSegmenter` is an output of a stream's encoder. It copies packets
(never re-encodes) into the open segment, an MPEG-TS written by FFmpeg's
muxer into memory, and cuts a new segment at the first keyframe once the
open one holds ``segment_s`` (so segments are 1-2 s with the encoder's 1 s
keyframes). Timestamps are the encoder's, unchanged, so consecutive
segments are contiguous in time; a new time line (a camera that restarted
its clock, or changed size) is marked ``#EXT-X-DISCONTINUITY``.

Bounds: the playlist lists the newest ``segments`` segments and only those
are held (a few seconds of video: a few hundred KiB to a few MiB per stream);
a segment that grows past ``max_segment_bytes`` (a stream without
keyframes) is cut there.

FFmpeg's HLS muxer is not used: it writes files, and it has no low-latency
HLS either; the playlist is written here so its segment URLs can carry the
viewer's token when the server asks for one.

Thread-safety: packets arrive on the encoder's thread; :meth:`playlist` and
:meth:`segment` are read from the server's, under a lock.
"""

from __future__ import annotations

import collections
import fractions
import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av

from .h264 import TIME_BASE, EncodedPacket

SEGMENT_NAME = "segment-{sequence}.ts"


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished segment.

    Attributes:
        sequence: Its media sequence number (from 0, increasing for the process's life).
        duration_s: Its length: from its first packet to the next segment's first.
        data: The MPEG-TS bytes.
        discontinuity: The first segment of a new time line.
    """

    sequence: int
    duration_s: float
    data: bytes
    discontinuity: bool


class _OpenSegment:
    """The segment being written: an MPEG-TS muxer over a memory buffer."""

    def __init__(self, width: int, height: int, rate: float, first: EncodedPacket) -> None:
        self.buffer = io.BytesIO()
        # copyts: the encoder's timestamps go in as they are, so consecutive segments line up.
        self._container: Any = av.open(self.buffer, "w", format="mpegts",
                                       options={"mpegts_copyts": "1"})
        rate_fraction = fractions.Fraction(rate).limit_denominator(1001)
        self._stream: Any = self._container.add_mux_stream("h264", rate=rate_fraction, width=width, height=height)
        self._stream.time_base = TIME_BASE
        self.first_pts = first.pts
        self.last_pts = first.pts
        self.bytes = 0

    def add(self, packet: EncodedPacket) -> None:
        copy = av.Packet(packet.data)
        copy.pts = copy.dts = packet.pts
        copy.time_base = TIME_BASE
        copy.is_keyframe = packet.keyframe
        copy.stream = self._stream
        self._container.mux(copy)
        self.last_pts = packet.pts
        self.bytes += len(packet.data)

    def finish(self) -> bytes:
        self._container.close()
        return self.buffer.getvalue()


class HlsSegmenter:
    """A stream's HLS: segments in memory, a playlist of the newest.

    Args:
        stream_id: The stream.
        segment_s: Shortest segment; it is cut at the first keyframe after this.
        segments: Segments listed and held.
        max_segment_bytes: A segment is cut at this size, keyframe or not.
    """

    def __init__(self, stream_id: str, segment_s: float = 1.0, segments: int = 6,
                 max_segment_bytes: int = 8 * 1024 * 1024) -> None:
        if segments < 2 or segment_s <= 0:
            raise ValueError(f"an HLS playlist needs 2 segments or more of a positive length, got {segments} "
                             f"of {segment_s} s")
        self.name = "hls"
        self.stream_id = stream_id
        self.segment_s = segment_s
        self.max_segments = segments
        self.max_segment_bytes = max_segment_bytes
        self._lock = threading.Lock()
        self._segments: collections.deque[Segment] = collections.deque(maxlen=segments)
        self._sequence = 0
        self._open: _OpenSegment | None = None
        self._format: tuple[int, int, float] | None = None
        self._discontinuity = False
        self._time_lines = 0
        self.packets_dropped = 0  # before a time line's first keyframe
        self.segments_written = 0
        self.segments_cut = 0  # cut at max_segment_bytes, without a keyframe
        self._frame_ticks = 1

    # -- the encoder's thread --------------------------------------------------

    def begin(self, width: int, height: int, rate: float) -> None:
        self._finish_open()
        self._format = (width, height, rate)
        self._frame_ticks = max(1, round(1 / (fractions.Fraction(rate).limit_denominator(1001) * TIME_BASE)))
        self._discontinuity = self._time_lines > 0
        self._time_lines += 1

    def on_packets(self, frame_index: int, packets: Sequence[EncodedPacket]) -> None:
        for packet in packets:
            self._add(packet)

    def end(self) -> None:
        self._finish_open()

    def close(self) -> None:
        self._finish_open()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            listed = list(self._segments)
        return {"segments": len(listed), "segments_written": self.segments_written,
                "segments_cut": self.segments_cut, "packets_dropped": self.packets_dropped,
                "span_s": round(sum(segment.duration_s for segment in listed), 3),
                "bytes": sum(len(segment.data) for segment in listed)}

    def _add(self, packet: EncodedPacket) -> None:
        segment = self._open
        if segment is not None:
            long_enough = (packet.pts - segment.first_pts) * TIME_BASE >= self.segment_s - 1e-6
            if packet.keyframe and long_enough:
                self._finish_open(next_pts=packet.pts)
                segment = None
            elif segment.bytes >= self.max_segment_bytes:  # no keyframe in sight: cut anyway, go on
                self.segments_cut += 1
                self._finish_open(next_pts=packet.pts)
                segment = self._start(packet)
        if segment is None:
            if self._format is None or not packet.keyframe:  # a segment starts at a keyframe
                self.packets_dropped += 1
                return
            segment = self._start(packet)
        segment.add(packet)

    def _start(self, packet: EncodedPacket) -> _OpenSegment:
        assert self._format is not None
        width, height, rate = self._format
        segment = self._open = _OpenSegment(width, height, rate, packet)
        return segment

    def _finish_open(self, next_pts: int | None = None) -> None:
        segment, self._open = self._open, None
        if segment is None:
            return
        end_pts = next_pts if next_pts is not None else segment.last_pts + self._frame_ticks
        finished = Segment(self._sequence, float((end_pts - segment.first_pts) * TIME_BASE), segment.finish(),
                           self._discontinuity)
        self._discontinuity = False
        with self._lock:
            self._segments.append(finished)
            self._sequence += 1
        self.segments_written += 1

    # -- the server's thread ------------------------------------------------------

    def playlist(self, query: str = "") -> str | None:
        """The media playlist (None: no segment yet); ``query`` (``token=...``) is added to each segment's URL."""
        with self._lock:
            listed = list(self._segments)
        if not listed:
            return None
        suffix = f"?{query}" if query else ""
        target = max(1, math.ceil(max(segment.duration_s for segment in listed)))
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{listed[0].sequence}"]
        for segment in listed:
            if segment.discontinuity and segment is not listed[0]:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{segment.duration_s:.3f},")
            lines.append(SEGMENT_NAME.format(sequence=segment.sequence) + suffix)
        return "\n".join(lines) + "\n"

    def segment(self, sequence: int) -> bytes | None:
        """A listed segment's bytes (None: never written, or gone from the window)."""
        with self._lock:
            for segment in self._segments:
                if segment.sequence == sequence:
                    return segment.data
        return None
