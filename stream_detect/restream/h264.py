"""One H.264 encoder: RGB frames in, Annex B packets out, keyframes on time.

Settings, and why:

- **No B-frames, no lookahead** (libx264 ``tune=zerolatency``, NVENC
  ``zerolatency``): a packet comes out for every frame at once, decode order
  is presentation order, and any keyframe is a valid place to start a file,
  an HLS segment or an RTSP session.
- **A keyframe every ``keyframe_s``**: the GOP is set on the codec context
  from the nominal rate, and a frame is also forced to be a keyframe once
  ``keyframe_s`` of its timestamps have passed since the last one (a source
  slower or faster than its nominal rate keeps the promise); libx264 adds no
  scene-cut keyframes, so GOPs and HLS segments are regular.
- **No global header**: every keyframe carries its SPS and PPS in band, so
  whatever starts at a keyframe decodes without the encoder's extradata.

Times: a frame is encoded at its stream time ``t`` (seconds); packets carry
``t`` and ``pts`` in :data:`TIME_BASE` ticks from the encoder's first frame.
``t`` must increase.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

TIME_BASE = fractions.Fraction(1, 90_000)
NVENC = "h264_nvenc"


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded frame.

    Attributes:
        data: The H.264 access unit (Annex B; SPS and PPS in band on keyframes).
        pts: Presentation time in :data:`TIME_BASE` ticks from the encoder's first frame (also its dts:
            the encoder makes no B-frames).
        t: The frame's stream time in seconds (pts, or capture time).
        keyframe: An IDR frame: a file may start here.
    """

    data: bytes
    pts: int
    t: float
    keyframe: bool

    def copy_for(self, stream: Any, origin: int, duration: int) -> av.Packet:
        """This packet for muxing into ``stream`` (a file of copied packets), its time ``origin`` ticks
        earlier (the file's first packet at 0) and lasting ``duration`` ticks (at least one)."""
        copy = av.Packet(self.data)
        copy.pts = copy.dts = self.pts - origin
        copy.duration = max(1, duration)
        copy.time_base = TIME_BASE
        copy.is_keyframe = self.keyframe
        copy.stream = stream
        return copy


@dataclass(frozen=True, slots=True)
class CodecSettings:
    """How a stream is encoded.

    Attributes:
        codec: ``libx264`` or ``h264_nvenc``.
        preset: libx264's speed preset (NVENC uses its low-latency preset).
        bitrate_kbps: Target bitrate; None: libx264's constant quality (crf 23).
        keyframe_s: Longest time between keyframes, in seconds of the frames' timestamps.
    """

    codec: str = "libx264"
    preset: str = "veryfast"
    bitrate_kbps: int | None = None
    keyframe_s: float = 1.0


class H264Encoder:
    """Encodes one time line of a stream's frames.

    Args:
        width, height: Frame size; every frame must have it (an odd size loses its last column or row:
            yuv420p needs an even one).
        rate: The stream's nominal frame rate (sets the GOP).
        settings: Codec, preset, bitrate, keyframe interval.
    """

    def __init__(self, width: int, height: int, rate: float, settings: CodecSettings | None = None) -> None:
        if width < 2 or height < 2:
            raise ValueError(f"a frame of {width}x{height} is too small to encode")
        self.source_width, self.source_height = width, height
        self.width, self.height = width - width % 2, height - height % 2  # the encoded size
        self.settings = settings = settings or CodecSettings()
        self.rate = fractions.Fraction(rate).limit_denominator(1001)
        self.gop = max(1, math.floor(float(self.rate) * settings.keyframe_s))
        codec: Any = av.CodecContext.create(settings.codec, "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = TIME_BASE
        codec.framerate = self.rate
        codec.gop_size = self.gop
        codec.max_b_frames = 0
        if settings.bitrate_kbps is not None:
            codec.bit_rate = settings.bitrate_kbps * 1000
        if settings.codec == NVENC:
            codec.options = {"preset": "p2", "tune": "ll", "zerolatency": "1", "forced-idr": "1"}
        else:
            codec.options = {"preset": settings.preset, "tune": "zerolatency", "forced-idr": "1",
                             "sc_threshold": "0"}
        self._codec = codec
        self._origin_t: float | None = None
        self._last_t: float | None = None
        self._last_keyframe_t: float | None = None
        self.frames = 0
        self._flushed = False

    @property
    def codec_name(self) -> str:
        return self.settings.codec

    @property
    def last_t(self) -> float | None:
        """The newest encoded frame's time."""
        return self._last_t

    def accepts(self, image: np.ndarray, t: float) -> bool:
        """Whether a frame of this size at ``t`` can follow the frames encoded so far."""
        size_fits = image.shape[0] == self.source_height and image.shape[1] == self.source_width
        return size_fits and not self._flushed and (self._last_t is None or t > self._last_t)

    def encode(self, image: np.ndarray, t: float) -> list[EncodedPacket]:
        """Encodes one ``(H, W, 3) uint8`` RGB frame at stream time ``t``; returns the packets it gave.

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
        keyframe_s = self.settings.keyframe_s
        if self._last_keyframe_t is not None and t - self._last_keyframe_t >= keyframe_s - 1e-6:
            frame.pict_type = av.video.frame.PictureType.I
        self._last_t = t
        self.frames += 1
        return self._packets(self._codec.encode(frame))

    def flush(self) -> list[EncodedPacket]:
        """Drains the encoder (the frames it still holds); nothing can be encoded after."""
        if self._flushed:
            return []
        self._flushed = True
        return self._packets(self._codec.encode(None))

    def _packets(self, packets: list[Any]) -> list[EncodedPacket]:
        origin = self._origin_t if self._origin_t is not None else 0.0
        found = []
        for packet in packets:
            pts = int(packet.pts)
            encoded = EncodedPacket(bytes(packet), pts, origin + float(pts * TIME_BASE), bool(packet.is_keyframe))
            if encoded.keyframe:
                self._last_keyframe_t = encoded.t
            found.append(encoded)
        return found


def pick_codec(requested: str, device: str) -> str:
    """The H.264 encoder for ``requested`` (auto, software, nvidia) on the model's ``device``: NVENC on
    a CUDA device whose FFmpeg has it, else libx264 (the device's own rule).

    Raises:
        ModelError: ``nvidia`` asked for where NVENC is not available.
    """
    if requested == "software":
        return "libx264"
    from ..detect.device import resolve_device

    return resolve_device(device).video_encoder(requested)
