"""Motion gating: a cheap per-stream test of whether a frame is worth a detector pass.

A source entry gains ``motion:`` (:class:`MotionConfig`)::

    motion:
      enabled: true          # default: on for live sources, off for files
      threshold: 25          # grey levels a pixel must change by
      min_area: 0.002        # part of the frame that must change
      max_idle_s: 10         # the detector still runs at least this often
      masks:                 # ignored for motion (trees, a clock, a busy road)
        - polygon: [[0, 0], [0.3, 0], [0.3, 0.2], [0, 0.2]]

:class:`MotionGate` looks at every frame of one stream. The frame is turned
grey and shrunk to :attr:`MotionConfig.width` pixels across by 2x2 averaging
steps (each an exact ``cv2.INTER_AREA`` halving, OpenCV's fast path: about
half the time of one direct ``INTER_AREA`` resize of a 1280x720 frame to 320
wide, which a strided subsample first does not speed up since OpenCV copies
the strided view; ``python -m stream_detect.bench.motion`` measures all
three), blurred a little, and compared with a running background, an
exponential average of the past frames whose time constant is
:attr:`MotionConfig.background_s` seconds of pts (so it behaves the same at
2 and at 25 frames per second). Pixels that differ by more than ``threshold``
grey levels and are not inside a mask count as changed; the frame moved when
they cover at least ``min_area`` of the frame.

A change of most of the watched picture at once (``sudden_area``: lights
switched on, an exposure step) counts as motion for that one frame; the
background then becomes the new picture, so the next frames compare with it.

The gate is pure (no clock, no I/O: time is the frame's pts) and holds one
stream's state: use one per stream, from one thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .analytics.geometry import to_pixels
from .analytics.settings import MaskConfig

Reason = Literal["motion", "idle", "sudden", "first", "still"]

# Pts differences this small are rounding (pts built from 1/fps), not time still to wait.
_IDLE_SLACK_S = 1e-6
_BLUR_KERNEL = 3  # pixels of the shrunk frame; its radius is how far a change inside a mask can bleed out
_HALVINGS_MAX = 16  # 2**16 wider than MotionConfig.width is no camera


class MotionConfig(BaseModel):
    """The ``motion:`` keys of a source entry."""

    # Same rules as stream_detect.config's models (unknown keys are errors, values frozen).
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = Field(
        None, description="Skip the detector on still frames (default: on for live sources, off for files).")
    threshold: int = Field(
        25, ge=0, le=254, description="A pixel changed when its grey level (0-255) differs from the background's "
                                      "by more than this.")
    min_area: float = Field(
        0.002, gt=0, le=1, description="Part of the frame's area that must change for the frame to move.")
    max_idle_s: float = Field(
        10.0, gt=0, le=86_400, description="Seconds of pts: the detector runs at least this often on a still scene.")
    masks: tuple[MaskConfig, ...] = Field((), description="Polygons where changes are ignored.")
    sudden_area: float = Field(
        0.6, gt=0, le=1, description="Part of the watched (unmasked) picture changing at once that is a global "
                                     "change (lights, exposure): motion for one frame, then the new background.")
    width: int = Field(320, ge=32, le=1920, description="Pixels across of the shrunk grey frame compared.")
    background_s: float = Field(
        0.5, gt=0, le=600, description="Seconds of pts for the background to take in a change: longer catches "
                                       "slower movement, shorter ends motion sooner after something stops.")

    @model_validator(mode="after")
    def _check_areas(self) -> MotionConfig:
        if self.sudden_area <= self.min_area:
            raise ValueError(f"sudden_area {self.sudden_area:g} must be larger than min_area {self.min_area:g}")
        return self


def motion_enabled(config: MotionConfig, live: bool) -> bool:
    """Whether a source gates its detector on motion: ``enabled`` when set, else whether it is live."""
    if config.enabled is not None:
        return config.enabled
    return live


@dataclass(frozen=True, slots=True)
class MotionDecision:
    """What the gate decided about one frame.

    Attributes:
        moved: Run the detector on this frame.
        area: Part of the frame's area that changed, in ``[0, 1]``; 0 when
            there was nothing to compare with (``first``).
        reason: ``motion`` (enough changed), ``sudden`` (most of the picture
            changed at once; the background was reset), ``idle`` (still, but
            ``max_idle_s`` passed since the last frame let through),
            ``first`` (the first frame, a new frame size or pts going back),
            or ``still``.
    """

    moved: bool
    area: float
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per input size: how to shrink it and which shrunk pixels are watched."""

    input_size: tuple[int, int]  # (width, height) of the frames
    halvings: int  # exact 2x2 averaging steps
    size: tuple[int, int]  # (width, height) compared
    watched: np.ndarray | None  # (h, w) uint8, 255 where watched; None: everything
    watched_pixels: int


def _layout(config: MotionConfig, width: int, height: int) -> _Layout:
    target_width = min(config.width, width)
    target_height = max(1, round(height * target_width / width))
    halvings = 0
    shrunk_width, shrunk_height = width, height
    for _ in range(_HALVINGS_MAX):
        if shrunk_width // 2 < target_width or shrunk_height // 2 < target_height:
            break
        shrunk_width, shrunk_height = shrunk_width // 2, shrunk_height // 2
        halvings += 1
    size = (target_width, target_height)
    watched = _watched(config.masks, width, height, size)
    pixels = target_width * target_height if watched is None else int(cv2.countNonZero(watched))
    return _Layout((width, height), halvings, size, watched, pixels)


def _watched(masks: tuple[MaskConfig, ...], width: int, height: int, size: tuple[int, int]) -> np.ndarray | None:
    """255 where a shrunk pixel is watched, 0 inside a mask or within the blur's reach of one."""
    if not masks:
        return None
    shrunk_width, shrunk_height = size
    scale = np.array([shrunk_width / width, shrunk_height / height])
    ignored = np.zeros((shrunk_height, shrunk_width), np.uint8)
    for mask in masks:
        # Shrunk pixel i spans [i, i + 1) of the scaled coordinates; fillPoly puts its centre at i.
        corners = to_pixels(mask.polygon, mask.units, width, height) * scale - 0.5
        cv2.fillPoly(ignored, [np.round(corners * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
    # A shrunk pixel at a mask's edge averages pixels on both sides, and the blur spreads a
    # change further: widen the masks by that reach so nothing moving inside one is seen outside.
    reach = _BLUR_KERNEL // 2 + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    widened = cv2.dilate(ignored, kernel)
    return np.asarray(cv2.bitwise_not(widened))


def _shrink(image: np.ndarray, layout: _Layout) -> np.ndarray:
    """``(h, w) uint8`` grey, shrunk and lightly blurred."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # on the full frame: cheaper than halving three channels
    for _ in range(layout.halvings):
        grey = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (grey.shape[1], grey.shape[0]) != layout.size:
        grey = cv2.resize(grey, layout.size, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.GaussianBlur(grey, (_BLUR_KERNEL, _BLUR_KERNEL), 0))


class MotionGate:
    """Decides, frame by frame, whether one stream's frame moved.

    Args:
        config: The stream's motion settings (``enabled`` is the caller's
            business: see :func:`motion_enabled`).
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._layout: _Layout | None = None
        self._background: np.ndarray | None = None  # (h, w) float32
        self._last_t = 0.0
        self._last_run_t = 0.0

    def observe(self, image: np.ndarray, t: float) -> MotionDecision:
        """Looks at one frame.

        Args:
            image: ``(H, W, 3) uint8`` RGB.
            t: The frame's pts in seconds; it must not decrease, except that a
                step back (a source restarting its timeline) starts over.

        Returns:
            The decision; a frame with ``moved`` should go to the detector.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite number of seconds, got {t!r}")
        height, width = image.shape[:2]
        if self._layout is None or self._layout.input_size != (width, height):
            self._layout = _layout(self.config, width, height)
            self._background = None
        grey = _shrink(image, self._layout)
        if self._background is None or t < self._last_t:
            return self._start(grey, t)
        changed, area = self._changed(grey)
        layout = self._layout
        if layout.watched_pixels and changed >= self.config.sudden_area * layout.watched_pixels:
            self._background = grey.astype(np.float32)
            return self._let_through(t, area, "sudden")
        elapsed = t - self._last_t
        cv2.accumulateWeighted(grey, self._background, 1.0 - math.exp(-elapsed / self.config.background_s))
        if area >= self.config.min_area:
            return self._let_through(t, area, "motion")
        if t - self._last_run_t >= self.config.max_idle_s - _IDLE_SLACK_S:
            return self._let_through(t, area, "idle")
        self._last_t = t
        return MotionDecision(False, area, "still")

    def _start(self, grey: np.ndarray, t: float) -> MotionDecision:
        self._background = grey.astype(np.float32)
        return self._let_through(t, 0.0, "first")

    def _let_through(self, t: float, area: float, reason: Reason) -> MotionDecision:
        self._last_t = self._last_run_t = t
        return MotionDecision(True, area, reason)

    def _changed(self, grey: np.ndarray) -> tuple[int, float]:
        """Watched pixels differing from the background by more than the threshold, and their part of the frame."""
        assert self._background is not None and self._layout is not None
        background = cv2.convertScaleAbs(self._background)  # rounded to uint8: the difference stays uint8
        difference = cv2.absdiff(grey, background)
        _, changed = cv2.threshold(difference, self.config.threshold, 255, cv2.THRESH_BINARY)
        if self._layout.watched is not None:
            changed = cv2.bitwise_and(changed, self._layout.watched)
        count = int(cv2.countNonZero(changed))
        return count, count / changed.size
