"""A source's ``restream:`` settings: its annotated video pushed over RTSP and served as HLS."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RestreamConfig(BaseModel):
    """Where a stream's annotated video goes besides the preview: an RTSP server, the HLS endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rtsp: str | None = Field(
        None, description="Push (RTSP ANNOUNCE/RECORD, over TCP) to this server: rtsp://HOST[:PORT]/PATH."
    )
    hls: bool = Field(False, description="Serve /streams/{id}/hls/index.m3u8 (MPEG-TS segments held in memory).")
    encoder: Literal["auto", "software", "nvidia"] = Field(
        "auto", description="H.264 encoder: auto is NVENC on a CUDA device that has it, else libx264."
    )
    preset: str = Field("veryfast", pattern=r"^[a-z0-9]+$", description="libx264 speed preset.")
    bitrate_kbps: int | None = Field(
        None, ge=100, le=100_000, description="Target bitrate (default: the encoder's quality mode, crf 23)."
    )
    keyframe_s: float = Field(1.0, ge=0.2, le=10, description="Longest time between keyframes (and so segments).")
    queue_size: int = Field(8, ge=1, le=256, description="Frames waiting for the encoder; more drop the oldest.")
    hls_segment_s: float = Field(1.0, ge=0.5, le=10, description="Shortest HLS segment (cut at the next keyframe).")
    hls_segments: int = Field(6, ge=3, le=60, description="Segments in the HLS playlist (and held in memory).")
    rtsp_queue_s: float = Field(2.0, gt=0, le=30, description="Seconds of video held for a slow RTSP server.")

    @field_validator("rtsp")
    @classmethod
    def _check_rtsp(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as error:
            raise ValueError(f"rtsp must be an rtsp:// URL: {error}") from None
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("rtsp must be an rtsp:// or rtsps:// URL with a host, e.g. rtsp://127.0.0.1:8554/cam")
        if port == 0:
            raise ValueError("rtsp's port must not be 0")
        return value

    @property
    def enabled(self) -> bool:
        """Anything to do: an RTSP push or HLS."""
        return self.rtsp is not None or self.hls
