"""Drawing detections onto frames: a pure function on numpy arrays.

One renderer serves the live preview, snapshots and recordings. Each label
has one stable colour (a hash of its name into a palette, the same in every
process); line width and text size scale with the frame, so a 160x120 frame
and a 4K frame both read well; label tags are moved inside the frame when a
box touches an edge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .records import Detections

# Distinct, saturated colours that read on dark and bright scenes (RGB).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49),
    (72, 249, 10), (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187),
    (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255), (0, 24, 236),
    (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colour(label: str) -> tuple[int, int, int]:
    """The RGB colour of ``label``: stable across runs and processes.

    FNV-1a over the UTF-8 bytes picks the palette entry; the dashboard's
    script computes the same, so list swatches match the boxes.
    """
    value = 0x811C9DC5
    for byte in label.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return PALETTE[value % len(PALETTE)]


@dataclass(frozen=True)
class Style:
    """Sizes derived from the frame, so overlays scale with resolution."""

    thickness: int
    font_scale: float
    font_thickness: int
    pad: int

    @classmethod
    def for_frame(cls, width: int, height: int) -> Style:
        short = min(width, height)
        thickness = max(2, round(short / 240))
        font_scale = max(0.3, short / 900)
        return cls(thickness, font_scale, max(1, round(font_scale * 1.6)), max(1, round(short / 240)))


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _tag(image: np.ndarray, text: str, anchor: tuple[int, int], colour: tuple[int, int, int], style: Style,
         above: bool = True) -> tuple[int, int, int, int]:
    """Draws a filled tag with ``text`` near ``anchor`` (a box corner), kept inside the frame.

    Returns the tag's rectangle ``(x0, y0, x1, y1)``.
    """
    height, width = image.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)
    tag_w = min(width, text_w + 2 * style.pad)
    tag_h = min(height, text_h + baseline + 2 * style.pad)
    x0 = min(max(0, anchor[0]), width - tag_w)
    y0 = anchor[1] - tag_h if above else anchor[1]
    if y0 < 0:
        y0 = anchor[1] if above else 0  # no room above the box: put it inside, at the top
    y0 = min(max(0, y0), height - tag_h)
    x1, y1 = x0 + tag_w - 1, y0 + tag_h - 1
    cv2.rectangle(image, (x0, y0), (x1, y1), colour, -1)
    cv2.putText(image, text, (x0 + style.pad, y0 + style.pad + text_h), FONT, style.font_scale,
                _text_colour(colour), style.font_thickness, cv2.LINE_AA)
    return x0, y0, x1, y1


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    *,
    stream_name: str | None = None,
    clock: float | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """Returns a copy of ``image`` with ``detections`` drawn on it.

    Args:
        image: ``(H, W, 3) uint8`` RGB frame; not modified.
        detections: Boxes in the frame's pixels.
        stream_name: Shown top left with ``clock`` (Unix time) and ``fps`` when given.
    """
    canvas = image.copy()
    height, width = canvas.shape[:2]
    style = Style.for_frame(width, height)
    for box, score, label in zip(detections.xyxy, detections.confidence, detections.labels, strict=True):
        colour = label_colour(label)
        x0, y0 = int(np.clip(box[0], 0, width - 1)), int(np.clip(box[1], 0, height - 1))
        x1, y1 = int(np.clip(box[2], 0, width - 1)), int(np.clip(box[3], 0, height - 1))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, style.thickness)
        _tag(canvas, f"{label} {score:.2f}", (x0, y0), colour, style)
    if stream_name is not None or clock is not None or fps is not None:
        parts = [p for p in (stream_name,
                             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock)) if clock else None,
                             f"{fps:.1f} fps" if fps is not None else None) if p]
        _tag(canvas, "  ".join(parts), (0, 0), (24, 24, 24), style, above=False)
    return canvas
