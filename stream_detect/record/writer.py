"""Writing H.264 MP4 files that survive a crash.

Live segments are fragmented MP4 (``frag_keyframe+empty_moov``): the movie
header comes first and every fragment is self-contained, so a SIGKILL or a
power loss costs only the fragment being written (a plain MP4 keeps nothing
without its final ``moov``). Fragments start at every keyframe, one per
second by default.
"""

from __future__ import annotations

import fractions
import logging
from pathlib import Path
from typing import Any

import av
import numpy as np

log = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, 90_000)
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


def pick_encoder(requested: str) -> str:
    """``h264_nvenc`` when asked for and present, ``libx264`` otherwise."""
    if requested == "h264_nvenc":
        try:
            av.codec.Codec("h264_nvenc", "w")
            return "h264_nvenc"
        except Exception:  # not built in, or no NVIDIA driver
            log.warning("h264_nvenc is not available; recording with libx264")
    return "libx264"


class VideoWriter:
    """One H.264 MP4 file, written frame by frame.

    Args:
        path: Output file.
        width, height: Frame size; every frame must have it.
        rate: Nominal frame rate (frames carry their own timestamps).
        encoder: ``libx264`` or ``h264_nvenc``.
        preset: Encoder speed preset.
        keyframe_interval: Frames between keyframes (and so fragments).
        fragmented: Write a crash-safe fragmented MP4.
        audio_template: An input audio stream to copy packets of (``mux_audio``).
        threads: libx264's thread count; None: its own (1.5 per core).
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        rate: fractions.Fraction | float,
        *,
        encoder: str = "libx264",
        preset: str = "veryfast",
        keyframe_interval: int | None = None,
        fragmented: bool = True,
        audio_template: Any = None,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.width = width
        self.height = height
        muxer = {"movflags": FRAGMENTED, "flush_packets": "1"} if fragmented else {"movflags": "+faststart"}
        self._container: Any = av.open(str(path), "w", format="mp4", options=muxer)
        rate = fractions.Fraction(rate).limit_denominator(1001)
        codec = pick_encoder(encoder)
        stream: Any = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        gop = keyframe_interval or max(1, round(float(rate)))
        options = {"g": str(gop)}
        if codec == "libx264":
            options["preset"] = preset
            if threads is not None:
                options["threads"] = str(threads)
            if fragmented:
                # No lookahead or B-frames: the encoder holds no frames back, so a
                # crash loses only what is past the last fragment.
                options["tune"] = "zerolatency"
        stream.options = options
        self._stream = stream
        self._audio: Any = None
        if audio_template is not None:
            self._audio = self._container.add_stream_from_template(audio_template)
        self._last_pts: int | None = None
        self.frames = 0
        self._closed = False

    def write(self, image: np.ndarray, pts_s: float) -> bool:
        """Encodes one RGB frame at ``pts_s`` seconds from the file's start.

        Returns False (and writes nothing) when the timestamp does not advance.
        """
        pts = round(pts_s / TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            return False
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        return True

    def mux_audio(self, packet: Any) -> None:
        """Copies an audio packet from the template's container."""
        if self._audio is None or packet.dts is None:
            return
        packet.stream = self._audio
        self._container.mux(packet)

    def close(self) -> None:
        """Flushes the encoder (or the last frames are lost) and closes the file."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
