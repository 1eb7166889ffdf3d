"""Files, network streams and lavfi test sources, decoded by FFmpeg through PyAV.

Network URLs always get an open and a read timeout, so a silent camera makes a
read fail instead of hanging. FFmpeg's RTSP demuxer answers the first read
timeout with a packet it held back and fails only on the second, so RTSP reads
get half the configured timeout: a silent camera is noticed after
``read_timeout_s``, as configured. When a server goes away the demuxer simply
ends, as at the end of a file; the capture thread treats that as a disconnect
for live sources.

Packets are demuxed and decoded one by one: a packet the decoder rejects is
skipped and counted (``RawFrame.skipped``) instead of ending the file; only a
long run of rejected packets with no frame in between ends it.

PyAV's error messages carry the full URL, password included: every message
leaving this module is redacted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import av

from ..errors import SourceError, SourceOpenError
from ..redact import redact, redact_url
from .base import RawFrame

# Packets rejected in a row, with no frame decoded in between, before a
# source counts as undecodable (a few seconds of video at camera rates).
MAX_REJECTED_IN_A_ROW = 300


def _describe(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return redact(str(text))


class AVSource:
    """Anything FFmpeg opens: a path, a URL, or a lavfi graph.

    Args:
        stream_id: The stream's id.
        target: Path, URL or lavfi graph.
        live: Reconnect at the end instead of ending.
        input_format: FFmpeg input format (``"lavfi"`` for test sources).
        options: FFmpeg options (``rtsp_transport`` ...).
        timeout: ``(open_s, read_s)`` for network inputs.
        decoder: An FFmpeg decoder to use instead of the stream's own (NVDEC: ``h264_cuvid``).
    """

    def __init__(
        self,
        stream_id: str,
        target: str,
        *,
        live: bool,
        input_format: str | None = None,
        options: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        decoder: str | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.target = target
        self.live = live
        self.input_format = input_format
        self.options = options or {}
        self.timeout = timeout
        self.decoder = decoder
        if timeout is not None and target.lower().startswith(("rtsp://", "rtsps://")):
            # The demuxer fails only on its second read timeout (see the module docstring).
            timeout = (timeout[0], timeout[1] / 2)
        self._av_timeout = timeout
        self.shown = redact_url(target)

    def open(self) -> AVReader:
        try:
            container = av.open(
                self.target, mode="r", format=self.input_format, options=self.options, timeout=self._av_timeout
            )
        except (av.FFmpegError, OSError, ValueError) as error:
            raise SourceOpenError(f"cannot open {self.shown}: {_describe(error)}") from None
        try:
            if not container.streams.video:
                raise SourceOpenError(f"{self.shown} has no video stream")
            return AVReader(container, self.shown, self.decoder)
        except BaseException:
            container.close()
            raise


class AVReader:
    """An open container; iterating decodes its first video stream (with ``decoder`` when given)."""

    def __init__(self, container: Any, shown: str, decoder: str | None = None) -> None:
        self._container = container
        self._shown = shown
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # ~1.5x on 2 cores for single-slice camera streams
        self._decoder: Any = None
        if decoder is not None:
            try:
                self._decoder = av.CodecContext.create(decoder, "r")
                self._decoder.extradata = self._stream.codec_context.extradata
            except (av.FFmpegError, ValueError) as error:
                raise SourceOpenError(f"{shown}: cannot use decoder {decoder!r}: {_describe(error)}") from None
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._iterating = False

    def __iter__(self) -> Iterator[RawFrame]:
        with self._lock:
            if self._closed:
                return
            self._iterating = True
        try:
            yield from self._decode()
        except SourceError:
            raise
        except (av.FFmpegError, OSError, ValueError) as error:
            if self._closing.is_set():
                return
            raise SourceError(f"reading {self._shown} failed: {_describe(error)}") from None
        finally:
            self._close_container()

    def _decode(self) -> Iterator[RawFrame]:
        """Demuxes and decodes packet by packet; demuxer errors (timeouts, I/O) propagate."""
        rejected = 0
        for packet in self._container.demux(self._stream):
            if self._closing.is_set():
                return
            try:
                frames = self._decoder.decode(packet) if self._decoder is not None else packet.decode()
            except (av.FFmpegError, ValueError):
                rejected += 1
                if rejected >= MAX_REJECTED_IN_A_ROW:
                    raise SourceError(
                        f"reading {self._shown} failed: the decoder rejected {rejected} packets in a row"
                    ) from None
                continue
            for frame in frames:
                if self._closing.is_set():
                    return
                yield RawFrame(
                    image=frame.to_ndarray(format="rgb24"),
                    pts=frame.time,
                    corrupt=bool(getattr(frame, "is_corrupt", False)),
                    skipped=rejected,
                )
                rejected = 0

    def close(self) -> None:
        """Asks the reading thread to stop; the container is closed by whoever holds it.

        FFmpeg contexts must not be closed under a thread that is decoding;
        a blocked read returns within the read timeout, then sees the flag.
        """
        self._closing.set()
        with self._lock:
            idle = not self._iterating
        if idle:
            self._close_container()

    def _close_container(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()
