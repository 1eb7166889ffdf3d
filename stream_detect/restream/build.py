"""A stream's encoder settings and ``restream:`` outputs, from its configuration."""

from __future__ import annotations

from ..config import RecordConfig, SourceConfig
from .h264 import CodecSettings, pick_codec
from .hls import HlsSegmenter
from .outputs import PacketOutput
from .rtsp_push import RtspPush

# Frames waiting for a stream's encoder when its restream settings do not say.
DEFAULT_QUEUE = 8


def restream_outputs(source: SourceConfig) -> list[PacketOutput]:
    """The outputs ``source``'s ``restream:`` asks for: the HLS segmenter, the RTSP push."""
    settings = source.restream
    outputs: list[PacketOutput] = []
    if settings is None:
        return outputs
    if settings.hls:
        outputs.append(HlsSegmenter(source.id, settings.hls_segment_s, settings.hls_segments))
    if settings.rtsp is not None:
        outputs.append(RtspPush(source.id, settings.rtsp, max_queue_s=settings.rtsp_queue_s))
    return outputs


def codec_settings(source: SourceConfig, record: RecordConfig | None, device: str) -> tuple[CodecSettings, int]:
    """How ``source`` is encoded, and the frames its encoder queues: its ``restream:`` settings when it has
    them, else its recording's (encoder and preset), else libx264 ``veryfast``.

    Args:
        device: The device of the model serving it (``auto``, ``cuda:0``, ...): NVENC is used on CUDA.

    Raises:
        ModelError: ``encoder: nvidia`` where NVENC is not available.
    """
    settings = source.restream
    if settings is not None:
        codec = CodecSettings(pick_codec(settings.encoder, device), settings.preset, settings.bitrate_kbps,
                              settings.keyframe_s)
        return codec, settings.queue_size
    if record is not None:
        from ..record.writer import pick_encoder

        return CodecSettings(pick_encoder(record.encoder), record.preset), DEFAULT_QUEUE
    return CodecSettings(), DEFAULT_QUEUE
