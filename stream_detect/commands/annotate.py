"""``stream-detect annotate INPUT --output OUT.mp4``: every frame of a file, annotated.

No frame is dropped: a decode thread feeds a blocking queue, the main thread
runs the detector on batches, draws and encodes. The output keeps the input's
frame count, size, frame rate and timestamps; the first audio stream is
copied as it is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
import orjson

from ..config import ModelConfig
from ..detect import load_detector
from ..detect.base import Detector
from ..detect.device import resolve_device
from ..errors import SourceError, SourceOpenError
from ..frame_queue import DropPolicy, FrameQueue, QueueClosed
from ..record.writer import VideoWriter
from ..render import draw_detections
from ..serialize import to_hf_elements


@dataclass(frozen=True, slots=True)
class _Picture:
    index: int
    image: np.ndarray
    pts: float


_Item = _Picture | Any  # a decoded picture, or an audio packet to copy


def _open(path: str) -> Any:
    try:
        return av.open(path)
    except (av.FFmpegError, OSError) as error:
        raise SourceOpenError(f"cannot open {path!r}: {getattr(error, 'strerror', None) or error}") from None


@dataclass(frozen=True)
class VideoCodecs:
    """Which video codecs ``annotate`` uses: ``auto`` (NVDEC/NVENC on CUDA devices when present),
    ``software`` (FFmpeg's decoder, libx264) or ``nvidia`` (insist on NVDEC/NVENC)."""

    decoder: str = "auto"
    encoder: str = "auto"


@dataclass(frozen=True)
class _Codecs:
    hardware_decoder: Any  # a PyAV codec context, or None for the stream's own decoder
    encoder: str


def _resolve_codecs(config: ModelConfig, video: Any, codecs: VideoCodecs) -> _Codecs:
    device = resolve_device(config.device)
    name = device.video_decoder(video.codec_context.name, codecs.decoder)
    context = None
    if name is not None:
        context = av.CodecContext.create(name, "r")
        context.extradata = video.codec_context.extradata
    return _Codecs(context, device.video_encoder(codecs.encoder))


def _decode(container: Any, video: Any, audio: Any, queue: FrameQueue[_Item], stop: threading.Event,
            errors: list[BaseException], hardware: Any = None) -> None:
    """Decode thread: pictures and audio packets, in file order, into ``queue``.

    ``hardware``: a decoder context (NVDEC) used instead of the stream's own.
    """
    rate = video.average_rate or video.guessed_rate or Fraction(25)
    first: float | None = None
    index = 0
    streams = [s for s in (video, audio) if s is not None]
    try:
        for packet in container.demux(*streams):
            if stop.is_set():
                return
            if packet.stream is audio:
                if packet.dts is not None:
                    _put(queue, packet, stop)
                continue
            for frame in (hardware.decode(packet) if hardware is not None else packet.decode()):
                time_s = frame.time if frame.time is not None else index / float(rate)
                first = time_s if first is None else first
                picture = _Picture(index, frame.to_ndarray(format="rgb24"), time_s - first)
                _put(queue, picture, stop)
                index += 1
    except av.FFmpegError as error:
        errors.append(error)
    finally:
        queue.close()


def _put(queue: FrameQueue[_Item], item: _Item, stop: threading.Event) -> None:
    while not stop.is_set() and not queue.put(item, timeout=0.5):
        pass


def _items(queue: FrameQueue[_Item]) -> Iterator[_Item]:
    while True:
        try:
            item = queue.get_nowait()
        except QueueClosed:
            return
        if item is not None:
            yield item
            continue
        with queue.wakeup:
            if not len(queue) and not queue.closed:
                queue.wakeup.wait(0.5)


def _progress(total: int | None) -> AbstractContextManager[Any]:
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    class FpsColumn(TransferSpeedColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            return Text(f"{task.speed or 0:.1f} frames/s", style="progress.data.speed")

    return Progress(
        TextColumn("annotating"), BarColumn(), MofNCompleteColumn(), FpsColumn(), TimeRemainingColumn(),
        transient=False,
    )


class _Annotator:
    """Detects, draws and writes batches of pictures."""

    def __init__(self, detector: Detector, config: ModelConfig, writer: VideoWriter, jsonl: IO[bytes] | None) -> None:
        self.detector = detector
        self.config = config
        self.writer = writer
        self.jsonl = jsonl
        self.allowed = frozenset(config.labels) if config.labels else None
        self.frames = 0

    def flush(self, batch: list[_Picture]) -> None:
        if not batch:
            return
        results = self.detector.detect([p.image for p in batch], self.config.threshold)
        for picture, detections in zip(batch, results, strict=True):
            detections = detections.filter(self.config.threshold, self.allowed)
            self.writer.write(draw_detections(picture.image, detections), picture.pts)
            if self.jsonl is not None:
                line = {"frame": picture.index, "pts": round(picture.pts, 6), "detections": to_hf_elements(detections)}
                self.jsonl.write(orjson.dumps(line) + b"\n")
            self.frames += 1
        batch.clear()


def annotate(config: ModelConfig, input_path: str, output: str, jsonl_path: str | None,
             detector: Detector | None = None, codecs: VideoCodecs = VideoCodecs()) -> int:
    """Annotates every frame of ``input_path`` into ``output``; returns the exit code.

    ``detector``: an already loaded one (``bench``), left open; by default
    ``config``'s model is loaded and closed.
    """
    container = _open(input_path)
    try:
        if not container.streams.video:
            raise SourceOpenError(f"{input_path!r} has no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        total = video.frames or (round(float(video.duration * video.time_base) * rate) if video.duration else None)
        chosen = _resolve_codecs(config, video, codecs)
        if detector is not None:
            return _annotate(container, video, audio, rate, total, detector, config, output, jsonl_path, chosen)
        loaded = load_detector(config)
        try:
            return _annotate(container, video, audio, rate, total, loaded, config, output, jsonl_path, chosen)
        finally:
            loaded.close()
    finally:
        container.close()


def _annotate(container: Any, video: Any, audio: Any, rate: Fraction, total: int | None, detector: Detector,
              config: ModelConfig, output: str, jsonl_path: str | None, codecs: _Codecs) -> int:
    queue: FrameQueue[_Item] = FrameQueue(max(8, 2 * config.max_batch_size), DropPolicy.BLOCK)
    stop = threading.Event()
    errors: list[BaseException] = []
    decoder = threading.Thread(
        target=_decode, args=(container, video, audio, queue, stop, errors, codecs.hardware_decoder), name="decode"
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(Path(output), video.codec_context.width, video.codec_context.height, rate,
                         encoder=codecs.encoder, fragmented=False, audio_template=audio)
    jsonl = open(jsonl_path, "wb") if jsonl_path else None  # noqa: SIM115 - closed below
    annotator = _Annotator(detector, config, writer, jsonl)
    decoder.start()
    try:
        with _progress(total) as progress:
            task = progress.add_task("annotate", total=total) if progress is not None else None
            batch: list[_Picture] = []
            for item in _items(queue):
                if not isinstance(item, _Picture):
                    writer.mux_audio(item)
                    continue
                batch.append(item)
                if len(batch) >= config.max_batch_size:
                    annotator.flush(batch)
                    if progress is not None:
                        progress.update(task, completed=annotator.frames)
            annotator.flush(batch)
            if progress is not None:
                progress.update(task, completed=annotator.frames)
    finally:
        stop.set()
        decoder.join(10)
        writer.close()
        if jsonl is not None:
            jsonl.close()
    if errors:
        raise SourceError(f"decoding stopped after {annotator.frames} frames: {errors[0]}")
    print(f"stream-detect: annotated {annotator.frames} frames into {output}", file=sys.stderr)
    return 0
