"""Precision ``int8``: what it calibrates on, and the check that it finds what fp32 finds.

int8 is asked for explicitly (``--precision int8``, ``model.precision:
int8``), never chosen by itself. Its activations are calibrated on
:data:`CALIBRATION_FRAMES` frames: by default frames of the synthetic camera,
or images from the user's own cameras (``--calibration DIR``, what a model
quantized for real scenes should see). When the model loads, int8 and
fp32 detect on the probe image and on a few of the calibration frames; int8
is kept only when both find the same objects (:func:`compare`), else the
detector runs in fp32 with one warning line. The verdict is kept in the
conversion cache (per model, CPU, runtime versions and tolerances), so only
the first start on a CPU runs the check.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..evaluation import Box, iou
from ..records import Detections
from .backends.quantize import Calibration
from .bf16_probe import probe_image
from .preprocess import ModelInputs

log = logging.getLogger(__name__)

CALIBRATION_FRAMES = 16
CALIBRATION_SIZE = (1280, 720)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The agreement asked of int8: every object fp32 finds clearly (its score at least SCORE_BAND above the
# threshold) is found by int8 too, with the same label, an IoU of at least MIN_IOU and a score within
# SCORE_TOLERANCE, and the other way round. Objects within SCORE_BAND of the threshold may be found by
# one precision only: any change of precision moves some of them across it.
MIN_IOU = 0.85
SCORE_TOLERANCE = 0.1
SCORE_BAND = 0.05
CHECKED_FRAMES = 3


def calibration_images(directory: str | Path | None, count: int = CALIBRATION_FRAMES) -> tuple[list[np.ndarray], str]:
    """``count`` RGB images to calibrate on and a digest of them: frames of the synthetic camera, or images
    spread evenly over ``directory``'s files (sorted by name).

    Raises:
        ModelError: ``directory`` is not a directory, holds no image, or an image cannot be read.
    """
    if directory is None:
        return _synthetic_frames(count), f"synthetic-{count}"
    import cv2

    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise ModelError(f"calibration: {str(directory)!r} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ModelError(f"calibration: {str(directory)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > count:
        files = [files[round(i * (len(files) - 1) / max(1, count - 1))] for i in range(count)]
    digest = hashlib.sha256()
    images = []
    for path in files:
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"calibration: cannot read {path.name} in {str(directory)!r} as an image")
        digest.update(hashlib.sha256(data).digest())
        images.append(np.ascontiguousarray(image[:, :, ::-1]))
    return images, f"sha256:{digest.hexdigest()}"


def _synthetic_frames(count: int) -> list[np.ndarray]:
    """Frames of the synthetic camera at :data:`CALIBRATION_SIZE`: four scenes, a second apart."""
    from ..sources.synthetic import SyntheticScene

    width, height = CALIBRATION_SIZE
    scenes = [SyntheticScene(width, height, seed=seed) for seed in range(4)]
    frames = []
    for index in range(count):
        scene = scenes[index % len(scenes)]
        for _ in range(25):
            image, _ = scene.next_frame()
        frames.append(image)
    return frames


def calibration(directory: str | Path | None, preprocess: Callable[[Sequence[np.ndarray]], ModelInputs]) -> Calibration:
    """The :class:`Calibration` of ``directory``'s images (None: the synthetic camera's), each preprocessed
    as the detector does; the images are read now (a bad directory is an error at once)."""
    images, digest = calibration_images(directory)
    described = f"{len(images)} frames of " + ("the synthetic camera" if directory is None else str(directory))
    return Calibration(digest, lambda: [preprocess([image]) for image in images], described, tuple(images))


@dataclass(frozen=True)
class Agreement:
    """How int8's detections compared with fp32's on the checked images."""

    images: int
    matched: int
    missing: int
    extra: int
    min_iou: float
    score: float

    @property
    def agrees(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.min_iou >= MIN_IOU and self.score <= SCORE_TOLERANCE

    def describe(self) -> str:
        text = (f"{self.matched} objects on {self.images} images: IoU at least {self.min_iou:.3f} "
                f"(needs {MIN_IOU}), scores up to {self.score:.3f} apart (tolerance {SCORE_TOLERANCE})")
        if self.missing:
            text += f", {self.missing} found by fp32 only"
        if self.extra:
            text += f", {self.extra} found by int8 only"
        return text

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.images + other.images, self.matched + other.matched, self.missing + other.missing,
                         self.extra + other.extra, min(self.min_iou, other.min_iou), max(self.score, other.score))


def compare(reference: Detections, candidate: Detections, threshold: float) -> Agreement:
    """``candidate`` (int8) against ``reference`` (fp32), both detected at ``threshold - SCORE_BAND``.

    Detections are paired greedily, strongest reference first, with the
    unpaired candidate of the same label it overlaps most (IoU above 0.5).
    """
    clear = threshold + SCORE_BAND
    taken: set[int] = set()
    matched = missing = 0
    min_iou, score = 1.0, 0.0
    for index in np.argsort(-reference.confidence, kind="stable"):
        same = [j for j in range(len(candidate)) if j not in taken and candidate.labels[j] == reference.labels[index]]
        overlaps = [iou(_box(reference.xyxy[index]), _box(candidate.xyxy[j])) for j in same]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best < 0 or overlaps[best] <= 0.5:
            missing += int(reference.confidence[index] >= clear)
            continue
        taken.add(same[best])
        if max(reference.confidence[index], candidate.confidence[same[best]]) >= threshold:
            matched += 1
            min_iou = min(min_iou, overlaps[best])
            score = max(score, abs(float(reference.confidence[index]) - float(candidate.confidence[same[best]])))
    extra = sum(1 for j in range(len(candidate)) if j not in taken and candidate.confidence[j] >= clear)
    return Agreement(1, matched, missing, extra, min_iou, score)


def _box(xyxy: np.ndarray) -> Box:
    return float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3])


def int8_agrees(detect_fp32: Callable[[np.ndarray], Detections], detect_int8: Callable[[np.ndarray], Detections],
                threshold: float, frames: Sequence[np.ndarray] = ()) -> Agreement:
    """Both precisions on the probe image and the first :data:`CHECKED_FRAMES` of ``frames``, compared."""
    images = [probe_image(), *frames[:CHECKED_FRAMES]]
    result = Agreement(0, 0, 0, 0, 1.0, 0.0)
    for image in images:
        result = result + compare(detect_fp32(image), detect_int8(image), threshold)
    return result


__all__ = ["CALIBRATION_FRAMES", "MIN_IOU", "SCORE_BAND", "SCORE_TOLERANCE", "Agreement", "calibration",
           "calibration_images", "compare", "int8_agrees"]
