"""Video sources: one reader per kind, behind the :class:`Source` protocol."""

from __future__ import annotations

from ..config import (
    FileSource,
    LavfiSource,
    SourceConfig,
    SyntheticSource,
    UrlSource,
    WebcamSource,
    reopens_at_end,
)
from .base import RawFrame, Reader, Source, SourceState


def build_source(config: SourceConfig) -> Source:
    """The source a configuration describes (nothing is opened yet)."""
    from .av_reader import AVSource
    from .synthetic import SyntheticSource as SyntheticCamera
    from .webcam import WebcamSource as Webcam

    if isinstance(config, UrlSource):
        options: dict[str, str] = {}
        if config.url.lower().startswith("rtsp"):
            options["rtsp_transport"] = config.rtsp_transport
        return AVSource(config.id, config.url, live=True, options=options,
                        timeout=(config.open_timeout_s, config.read_timeout_s), decoder=config.decoder)
    if isinstance(config, FileSource):
        return AVSource(config.id, config.path, live=reopens_at_end(config), decoder=config.decoder)
    if isinstance(config, LavfiSource):
        return AVSource(config.id, config.graph, live=True, input_format="lavfi")
    if isinstance(config, WebcamSource):
        return Webcam(config.id, config.device, width=config.width, height=config.height, fps=config.fps,
                      read_timeout_s=config.read_timeout_s)
    if isinstance(config, SyntheticSource):
        return SyntheticCamera(config.id, config.width, config.height, config.fps, config.seed, config.frames)
    raise TypeError(f"unknown source kind {type(config).__name__}")


__all__ = ["RawFrame", "Reader", "Source", "SourceState", "build_source"]
