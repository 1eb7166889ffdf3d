"""Local cameras through OpenCV (V4L2 on Linux), with open and read timeouts.

Without ``CAP_PROP_READ_TIMEOUT_MSEC`` a stalled device blocks ``read()`` for
tens of seconds; with it, ``read()`` fails after the timeout and the capture
thread reconnects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import cv2

from ..errors import SourceOpenError
from ..redact import redact_url
from .base import RawFrame


class WebcamSource:
    """A camera named by index or device path (``/dev/video0``)."""

    live = True

    def __init__(
        self,
        stream_id: str,
        device: str | int,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        read_timeout_s: float = 3.0,
    ) -> None:
        self.stream_id = stream_id
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.read_timeout_s = read_timeout_s

    def open(self) -> WebcamReader:
        timeout_ms = int(self.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        capture = cv2.VideoCapture(self.device, cv2.CAP_ANY, params)
        if not capture.isOpened():
            capture.release()
            raise SourceOpenError(f"cannot open camera {redact_url(str(self.device))!r}: no such device, or it is busy")
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):
            if value:
                capture.set(prop, value)
        reported = capture.get(cv2.CAP_PROP_FPS)
        return WebcamReader(capture, float(reported) if reported and reported > 0 else self.fps)


class WebcamReader:
    def __init__(self, capture: cv2.VideoCapture, fps: float | None) -> None:
        self._capture = capture
        self.fps = fps
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._released = False

    def __iter__(self) -> Iterator[RawFrame]:
        started = time.monotonic()
        try:
            while not self._closing.is_set():
                ok, bgr = self._capture.read()
                if not ok or bgr is None:
                    return  # unplugged or stalled past the read timeout: a disconnect
                yield RawFrame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pts=time.monotonic() - started)
        finally:
            self._release()

    def close(self) -> None:
        self._closing.set()

    def _release(self) -> None:
        with self._lock:
            if not self._released:
                self._released = True
                self._capture.release()
