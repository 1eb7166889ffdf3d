"""Building a stream's encoder and outputs from its ``restream:`` settings."""

from __future__ import annotations

from collections.abc import Callable

from ..overlay import Overlay
from .encoder import StreamEncoder
from .h264 import CodecSettings, pick_codec
from .hls import HlsSegmenter
from .outputs import PacketOutput
from .rtsp_push import RtspPush
from .settings import RestreamConfig


def build_stream_encoder(stream_id: str, settings: RestreamConfig, overlay_of: Callable[[], Overlay],
                         rate: float | None, device: str) -> StreamEncoder:
    """The encoder of one stream with the outputs its ``restream:`` settings ask for (not started).

    Args:
        stream_id: The stream.
        settings: Its ``restream:`` entry.
        overlay_of: Its latest overlay.
        rate: Its nominal frame rate, when it has one.
        device: The device of the model serving it (``auto``, ``cuda:0``, ...): NVENC is used on CUDA.
    """
    outputs: list[PacketOutput] = []
    if settings.hls:
        outputs.append(HlsSegmenter(stream_id, settings.hls_segment_s, settings.hls_segments))
    if settings.rtsp is not None:
        outputs.append(RtspPush(stream_id, settings.rtsp, max_queue_s=settings.rtsp_queue_s))
    codec = CodecSettings(pick_codec(settings.encoder, device), settings.preset, settings.bitrate_kbps,
                          settings.keyframe_s)
    return StreamEncoder(stream_id, overlay_of, outputs, rate, codec, settings.queue_size)
