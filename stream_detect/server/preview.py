"""Live annotated preview: MJPEG streams and snapshots.

Every captured frame is remembered (a reference, on the capture thread);
while someone watches, one encoder task per stream draws the latest detections
on the newest frame and encodes it to JPEG at most ``preview_fps`` times a
second. Viewers share that JPEG: three viewers cost the same encodes as one,
and with no viewer nothing is encoded. Drawing and encoding run in a worker
thread (OpenCV releases the GIL) so the event loop stays responsive.

Viewers are capped (``server.max_mjpeg_clients``, then 503); one that stops
reading is dropped by the connection's write-stall guard
(:mod:`.protocols`). At shutdown every MJPEG response ends cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import cv2
import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Gauge
from starlette.types import Receive, Scope, Send

from ..ports import PreviewSource, RemoteJpegs
from ..records import Detections, Frame
from ..render import draw_detections
from .context import ServerContext

BOUNDARY = "frame"


@dataclass(frozen=True, slots=True)
class Jpeg:
    data: bytes
    frame_index: int
    sequence: int


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


class StreamPreview:
    """The shared annotated JPEG of one run of a stream (a stream replaced under its id gets a new one)."""

    def __init__(self, stream_id: str, run: int, source: PreviewSource, fps: float, quality: int,
                 encodes: Counter, remote: RemoteJpegs | None = None) -> None:
        self.stream_id = stream_id
        self._remote = remote
        self.run = run
        self._source = source
        self.interval = 1.0 / fps
        self.quality = quality
        self._encodes = encodes.labels(stream=stream_id)
        self.latest_frame: Frame | None = None  # written by the capture thread
        self.viewers = 0
        self.jpeg: Jpeg | None = None
        self._sequence = 0
        self._published = asyncio.Event()  # replaced by a fresh one at every new JPEG
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Wakes every viewer waiting for the next JPEG (they look at why)."""
        published, self._published = self._published, asyncio.Event()
        published.set()

    def is_current(self) -> bool:
        """Whether its run of the stream still runs (not removed, not replaced)."""
        state = self._source.preview_state(self.stream_id)
        return state is not None and state.run == self.run

    def annotate(self, frame: Frame) -> np.ndarray:
        """``frame`` with the stream's zones, lines and latest boxes, each tracked box where it is predicted
        on this frame (the rule: :mod:`stream_detect.overlay`)."""
        state = self._source.preview_state(self.stream_id)
        if state is None or state.run != self.run:  # the stream went away: nothing of another run is drawn
            return draw_detections(frame.image, Detections.empty(), stream_name=self.stream_id,
                                   clock=frame.captured_at, fps=0.0)
        return state.overlay.draw(frame, stream_name=self.stream_id, clock=frame.captured_at,
                                  fps=state.processed_fps)

    async def _encode(self, frame: Frame) -> bytes:
        def work() -> bytes:
            return encode_jpeg(self.annotate(frame), self.quality)

        data = await asyncio.to_thread(work)
        self._encodes.inc()
        return data

    async def _run(self) -> None:
        last_index = -1
        while self.viewers > 0:
            started = time.monotonic()
            if self._remote is not None:
                last_index = await self._fetch(last_index)
                await asyncio.sleep(max(0.005, self.interval - (time.monotonic() - started)))
                continue
            frame = self.latest_frame
            if frame is not None and frame.index != last_index:
                data = await self._encode(frame)
                last_index = frame.index
                # Numbered per stream, not per task: viewers compare across encoder restarts.
                self._sequence += 1
                self.jpeg = Jpeg(data, frame.index, self._sequence)
                self.wake()
            await asyncio.sleep(max(0.005, self.interval - (time.monotonic() - started)))

    async def _fetch(self, last_index: int) -> int:
        """The newest JPEG from the machine that holds the stream's frames (they never come here)."""
        assert self._remote is not None
        found = await asyncio.to_thread(self._remote.preview_jpeg, self.stream_id, self.quality, False)
        if found is None or found[0] == last_index:
            return last_index
        self._encodes.inc()
        self._sequence += 1
        self.jpeg = Jpeg(found[1], found[0], self._sequence)
        self.wake()
        return found[0]

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Counts a viewer for the duration; starts the encoder for the first one."""
        self.viewers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"preview:{self.stream_id}")
        try:
            yield
        finally:
            self.viewers -= 1

    async def next_jpeg(self, after: int, timeout: float) -> Jpeg | None:
        """The first JPEG newer than sequence ``after``, or None after ``timeout`` seconds."""
        if self.jpeg is None or self.jpeg.sequence <= after:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._published.wait(), timeout)
        return self.jpeg if self.jpeg is not None and self.jpeg.sequence > after else None

    async def snapshot(self, raw: bool) -> bytes | None:
        if self._remote is not None:
            found = await asyncio.to_thread(self._remote.preview_jpeg, self.stream_id, self.quality, raw)
            return None if found is None else found[1]
        frame = self.latest_frame
        if frame is None:
            return None
        if raw:
            return await asyncio.to_thread(encode_jpeg, frame.image, self.quality)
        if self.jpeg is not None and self.jpeg.frame_index == frame.index:
            return self.jpeg.data
        return await self._encode(frame)


class _ViewerResponse(StreamingResponse):
    """A streaming response that gives back its viewer slot however it ends."""

    def __init__(self, *args: object, release: Callable[[], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class Previews:
    """Previews of every stream, fed by :meth:`on_frame` (a frame tap); they follow streams added,
    replaced and removed at run time (a preview belongs to one run of a stream).

    Args:
        context: The server's shared parts (its configuration, the metrics registry, the streams).
        source: Each stream's last detections and current run.
        remote: Where the JPEGs come from when the frames are on other machines (a cluster's nodes, which
            draw and encode them; fetched only while someone watches); None: frames come to :meth:`on_frame`.
    """

    def __init__(self, context: ServerContext, source: PreviewSource, remote: RemoteJpegs | None = None) -> None:
        config = context.config
        self.source = source
        self.remote = remote
        self.fps = config.preview_fps
        self.quality = config.jpeg_quality
        self.max_viewers = config.max_mjpeg_clients
        self.admitted = 0  # MJPEG responses holding a viewer slot, on every stream
        self.closing = False
        registry = context.metrics.registry
        self.encodes = Counter("stream_detect_preview_jpeg_encodes", "JPEG frames encoded for the live preview.",
                               ["stream"], registry=registry)
        self.viewers = Gauge("stream_detect_preview_viewers", "Clients watching a live preview.", ["stream"],
                             registry=registry)
        # Replaced, never mutated: the capture threads read it.
        self.by_stream: dict[str, StreamPreview] = {}
        self._lock = threading.Lock()
        for stream_id in context.streams.ids():
            self.preview_of(stream_id)

    def preview_of(self, stream_id: str) -> StreamPreview | None:
        """The preview of the stream running under ``stream_id`` now (made on first use), or None."""
        state = self.source.preview_state(stream_id)
        run = None if state is None else state.run
        preview = self.by_stream.get(stream_id)
        if preview is not None and preview.run == run:
            return preview
        with self._lock:
            preview = self.by_stream.get(stream_id)
            if preview is not None and preview.run == run:
                return preview
            if preview is not None:  # the stream was removed or replaced: its viewers end within a second
                with contextlib.suppress(KeyError):
                    self.viewers.remove(stream_id)
            if run is None:
                self.by_stream = {key: value for key, value in self.by_stream.items() if key != stream_id}
                return None
            preview = StreamPreview(stream_id, run, self.source, self.fps, self.quality, self.encodes, self.remote)
            self.viewers.labels(stream=stream_id).set_function(_viewer_count(preview))
            self.by_stream = {**self.by_stream, stream_id: preview}
            return preview

    def on_frame(self, frame: Frame) -> None:
        preview = self.preview_of(frame.stream_id)
        if preview is not None:
            preview.latest_frame = frame

    def admit(self) -> bool:
        """Takes a viewer slot; False when all ``max_viewers`` are taken (or the server is stopping)."""
        if self.closing or self.admitted >= self.max_viewers:
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        self.admitted -= 1

    async def close_all(self, timeout_s: float) -> None:
        """Ends every MJPEG response (at shutdown) and waits, at most ``timeout_s``, for them to finish."""
        self.closing = True
        for preview in self.by_stream.values():
            preview.wake()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.admitted and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)


def _viewer_count(preview: StreamPreview) -> Callable[[], float]:
    return lambda: float(preview.viewers)


def _unknown(stream_id: str) -> JSONResponse:
    return JSONResponse({"error": f"no stream {stream_id[:100]!r}"}, status_code=404)


def install_preview(app: FastAPI, context: ServerContext, previews: Previews) -> None:
    """Adds the MJPEG and snapshot routes."""

    @app.get("/streams/{stream_id}/mjpeg", tags=["streams"], response_model=None)
    async def mjpeg(stream_id: str) -> Response:
        """The annotated stream as multipart MJPEG."""
        preview = previews.preview_of(stream_id)
        if preview is None:
            return _unknown(stream_id)
        if not previews.admit():
            context.metrics.mjpeg_refused.inc()
            return JSONResponse({"error": f"too many preview viewers (limit {previews.max_viewers})"},
                                status_code=503, headers={"Retry-After": "5"})

        async def parts() -> AsyncIterator[bytes]:
            # Starlette cancels this generator when the viewer disconnects; it ends at shutdown.
            async with preview.watching():
                sequence = 0
                while not previews.closing and preview.is_current():
                    jpeg = await preview.next_jpeg(sequence, timeout=1.0)
                    if jpeg is None:
                        continue
                    sequence = jpeg.sequence
                    yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}\r\n\r\n"
                           .encode() + jpeg.data + b"\r\n")

        return _ViewerResponse(parts(), release=previews.release,
                               media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                               headers={"Cache-Control": "no-store"})

    @app.get("/streams/{stream_id}/snapshot.jpg", tags=["streams"], response_model=None)
    async def snapshot(stream_id: str, raw: bool = False) -> Response:
        """The latest frame as JPEG, annotated unless ``raw=1``."""
        preview = previews.preview_of(stream_id)
        if preview is None:
            return _unknown(stream_id)
        data = await preview.snapshot(raw)
        if data is None:
            return JSONResponse({"error": f"stream {stream_id!r} has no frame yet"}, status_code=503)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
