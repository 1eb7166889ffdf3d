"""The check that bf16 answers as fp32 does, before precision ``auto`` takes it on a CPU.

On CPUs with AMX or AVX512-BF16, bf16 ran DETR-R50 8x faster than torch's
fp32 (OpenVINO bf16 131 ms against 1,062 ms per 720p frame) with its
detections within 0.7 px and 0.003 of fp32's score. Those tolerances are
checked on one probe image when a model loads: the synthetic camera's
picture, through the detector's own pre- and post-processing, comparing the
strongest predictions of fp32 with bf16's. A model or runtime that strays
further stays in fp32, with one warning line. The verdict is kept in the
conversion cache (per model, CPU, runtime versions and tolerances), so later
starts skip the probe's forward passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..records import Detections

log = logging.getLogger(__name__)

BOX_TOLERANCE_PX = 0.7
SCORE_TOLERANCE = 0.003
# The strongest fp32 predictions compared: a model that finds nothing on the probe image above its
# threshold still has its best queries compared.
COMPARED = 5
PROBE_SIZE = (640, 480)


@dataclass(frozen=True)
class ProbeResult:
    """How far bf16's detections were from fp32's on the probe image."""

    compared: int
    box_px: float
    score: float
    unmatched: int

    @property
    def agrees(self) -> bool:
        return self.unmatched == 0 and self.box_px <= BOX_TOLERANCE_PX and self.score <= SCORE_TOLERANCE

    def describe(self) -> str:
        return (f"{self.compared} strongest detections: boxes up to {self.box_px:.2f} px apart "
                f"(tolerance {BOX_TOLERANCE_PX}), scores up to {self.score:.4f} (tolerance {SCORE_TOLERANCE})"
                + (f", {self.unmatched} without a counterpart" if self.unmatched else ""))


def probe_image() -> np.ndarray:
    """The image both precisions detect on: a frame of the synthetic camera (shapes on a textured background)."""
    from ..sources.synthetic import SyntheticScene

    width, height = PROBE_SIZE
    image, _ = SyntheticScene(width, height, seed=7).next_frame()
    return image


def compare(reference: Detections, candidate: Detections, compared: int = COMPARED) -> ProbeResult:
    """``candidate`` (bf16) against ``reference`` (fp32): each of the ``compared`` strongest reference
    detections against the candidate detection of the same label nearest to it."""
    order = np.argsort(-reference.confidence, kind="stable")[:compared]
    box_px = score = 0.0
    unmatched = 0
    taken: set[int] = set()
    for index in order:
        same = [j for j in range(len(candidate)) if candidate.labels[j] == reference.labels[index] and j not in taken]
        if not same:
            unmatched += 1
            continue
        distances = [float(np.abs(candidate.xyxy[j] - reference.xyxy[index]).max()) for j in same]
        best = same[int(np.argmin(distances))]
        taken.add(best)
        box_px = max(box_px, min(distances))
        score = max(score, abs(float(candidate.confidence[best]) - float(reference.confidence[index])))
    return ProbeResult(len(order), box_px, score, unmatched)


def bf16_agrees(detect_fp32: Callable[[np.ndarray], Detections],
                detect_bf16: Callable[[np.ndarray], Detections]) -> ProbeResult:
    """Both precisions on the probe image, every prediction kept (threshold 0), compared."""
    image = probe_image()
    return compare(detect_fp32(image), detect_bf16(image))


__all__ = ["BOX_TOLERANCE_PX", "SCORE_TOLERANCE", "ProbeResult", "bf16_agrees", "compare", "probe_image"]
