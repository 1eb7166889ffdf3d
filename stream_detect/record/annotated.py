"""The sinks of ``stream-detect annotate``: an annotated copy of a file, and its JSON Lines.

Both see every result of the file's stream, in order (they are added with
:attr:`~stream_detect.sinks.Overflow.BLOCK`, so their back-pressure reaches
the file's reader instead of dropping frames).

:class:`AnnotatedVideoSink` keeps the input's size, frame rate and
timestamps (rebased so the first frame is at 0) and copies its first audio
stream as it is: the audio is demuxed from a second, audio-only opening of
the input and fed to the muxer in time order, each packet before the first
video frame that follows it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av

from ..render import draw_detections
from ..sinks import FrameResult
from ..sources.capture import StateChange
from .writer import VideoWriter

log = logging.getLogger(__name__)


class _AudioCopy:
    """The input's first audio stream, packet by packet, in demux order."""

    def __init__(self, path: str) -> None:
        self._container: Any = av.open(path)
        self.stream: Any = self._container.streams.audio[0]
        self._packets: Iterator[Any] = (p for p in self._container.demux(self.stream) if p.dts is not None)
        self._next: Any = next(self._packets, None)

    def until(self, time_s: float | None) -> Iterator[Any]:
        """The packets that start before ``time_s`` (all that are left with None)."""
        while self._next is not None:
            packet = self._next
            if time_s is not None and packet.pts is not None and float(packet.pts * packet.time_base) > time_s:
                return
            self._next = next(self._packets, None)
            yield packet

    def close(self) -> None:
        self._container.close()


class AnnotatedVideoSink:
    """Draws each result's detections on its frame and encodes it into ``output``.

    Args:
        output: The MP4 to write (its directory is created).
        input_path: The file being annotated (for its audio, when ``audio``).
        width, height, rate: The input video's size and nominal frame rate.
        encoder: ``libx264`` or ``h264_nvenc``.
        audio: Copy the input's first audio stream.
        encoder_threads: libx264's threads (:meth:`~stream_detect.detect.device.Device.file_encoder_threads`).
    """

    name = "annotated-video"

    def __init__(self, output: Path, input_path: str, width: int, height: int, rate: Fraction,
                 encoder: str, audio: bool, encoder_threads: int | None = None) -> None:
        self._rate = rate
        self._audio = _AudioCopy(input_path) if audio else None
        output.parent.mkdir(parents=True, exist_ok=True)
        self._writer = VideoWriter(output, width, height, rate, encoder=encoder, fragmented=False,
                                   audio_template=self._audio.stream if self._audio else None,
                                   threads=encoder_threads)
        self._first_pts: float | None = None
        self.frames = 0

    def on_result(self, result: FrameResult) -> None:
        frame = result.frame
        pts = frame.pts if frame.pts is not None else frame.index / float(self._rate)
        if self._first_pts is None:
            self._first_pts = pts
        if self._audio is not None:
            for packet in self._audio.until(pts):
                self._writer.mux_audio(packet)
        if self._writer.write(draw_detections(frame.image, result.detections), pts - self._first_pts):
            self.frames += 1

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self) -> None:
        try:
            if self._audio is not None:
                for packet in self._audio.until(None):
                    self._writer.mux_audio(packet)
        finally:
            try:
                self._writer.close()
            finally:
                if self._audio is not None:
                    self._audio.close()


class JsonLinesSink:
    """One detections message per line (``schema/messages.schema.json``): the websocket's shape.

    Each line is flushed as it is written, so a reader following the file sees every frame as soon
    as it is annotated.
    """

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.lines = 0

    def on_result(self, result: FrameResult) -> None:
        self._file.write(result.json() + b"\n")
        self._file.flush()
        self.lines += 1

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self) -> None:
        self._file.close()
