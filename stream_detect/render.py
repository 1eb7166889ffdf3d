"""Drawing detections onto frames: a pure function on numpy arrays.

One renderer serves the live preview, snapshots and recordings. Each label
has one stable colour (a hash of its name into a palette, the same in every
process); line width and text size scale with the frame, so a 160x120 frame
and a 4K frame both read well; label tags are moved inside the frame when a
box touches an edge, and out from under the header (see ``draw_detections``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

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


ZONE_COLOUR = (255, 214, 0)
LINE_COLOUR = (0, 229, 255)


@dataclass(frozen=True)
class Regions:
    """A stream's zones and lines in the frame's pixels, drawn under the boxes.

    Attributes:
        zones: ``(name, (N, 2) points)`` per zone.
        lines: ``(name, (x_a, y_a), (x_b, y_b))`` per line, drawn from A to B
            with a tick pointing to its ``in`` side (A->B turned 90 degrees
            counter-clockwise on screen).
    """

    zones: tuple[tuple[str, np.ndarray], ...] = ()
    lines: tuple[tuple[str, tuple[float, float], tuple[float, float]], ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)


def _draw_regions(canvas: np.ndarray, regions: Regions, style: Style) -> None:
    height, width = canvas.shape[:2]
    for name, points in regions.zones:
        polygon = np.round(points).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [polygon], True, ZONE_COLOUR, style.thickness, cv2.LINE_AA)
        corner = (int(np.clip(points[:, 0].min(), 0, width - 1)), int(np.clip(points[:, 1].max(), 0, height - 1)))
        tag_w, tag_h = _tag_size(name, style, width, height)
        x0 = min(max(0, corner[0]), width - tag_w)
        y0 = min(max(0, corner[1] - tag_h), height - tag_h)
        _paint_tag(canvas, name, (x0, y0, x0 + tag_w - 1, y0 + tag_h - 1), ZONE_COLOUR, style)
    for name, a, b in regions.lines:
        pa, pb = (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))
        cv2.line(canvas, pa, pb, LINE_COLOUR, style.thickness, cv2.LINE_AA)
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = max(1e-6, float(np.hypot(dx, dy)))
        # On screen (y down), A->B turned 90 degrees counter-clockwise is (dy, -dx).
        tick = 6 * style.thickness
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        end = (round(mid[0] + dy / length * tick), round(mid[1] - dx / length * tick))
        cv2.arrowedLine(canvas, (round(mid[0]), round(mid[1])), end, LINE_COLOUR, style.thickness,
                        cv2.LINE_AA, tipLength=0.4)
        tag_w, tag_h = _tag_size(name, style, width, height)
        x0 = min(max(0, pa[0]), width - tag_w)
        y0 = min(max(0, pa[1]), height - tag_h)
        _paint_tag(canvas, name, (x0, y0, x0 + tag_w - 1, y0 + tag_h - 1), LINE_COLOUR, style)


Rect = tuple[int, int, int, int]
"""A rectangle ``(x0, y0, x1, y1)`` in pixels, both corners inclusive."""

HEADER_COLOUR = (24, 24, 24)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _tag_size(text: str, style: Style, width: int, height: int) -> tuple[int, int]:
    """The ``(width, height)`` of the filled tag holding ``text``, at most the frame's."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)
    return min(width, text_w + 2 * style.pad), min(height, text_h + baseline + 2 * style.pad)


def _label_rect(size: tuple[int, int], corner: tuple[int, int], width: int, height: int,
                header: Rect | None) -> Rect:
    """Where the tag of a box with top-left ``corner`` goes: above the box, kept inside the frame.

    With no room above (the frame's top edge, or the ``header`` there) the tag
    goes inside the box at its top, below the header when it would sit under it.
    """
    tag_w, tag_h = size
    x0 = min(max(0, corner[0]), width - tag_w)
    inside_y0 = corner[1]
    if header is not None and _overlaps((x0, inside_y0, x0 + tag_w - 1, inside_y0 + tag_h - 1), header):
        inside_y0 = header[3] + 1
    y0 = corner[1] - tag_h
    if y0 < 0 or (header is not None and _overlaps((x0, y0, x0 + tag_w - 1, y0 + tag_h - 1), header)):
        y0 = inside_y0
    y0 = min(max(0, y0), height - tag_h)
    return x0, y0, x0 + tag_w - 1, y0 + tag_h - 1


def _paint_tag(image: np.ndarray, text: str, rect: Rect, colour: tuple[int, int, int], style: Style) -> None:
    """Fills ``rect`` with ``colour`` and writes ``text`` in it, in black or white, whichever reads."""
    (_, text_h), _ = cv2.getTextSize(text, FONT, style.font_scale, style.font_thickness)
    cv2.rectangle(image, rect[:2], rect[2:], colour, -1)
    cv2.putText(image, text, (rect[0] + style.pad, rect[1] + style.pad + text_h), FONT, style.font_scale,
                _text_colour(colour), style.font_thickness, cv2.LINE_AA)


def _header_text(stream_name: str | None, clock: float | None, fps: float | None) -> str:
    parts = [p for p in (stream_name,
                         time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock)) if clock else None,
                         f"{fps:.1f} fps" if fps is not None else None) if p]
    return "  ".join(parts)


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    *,
    stream_name: str | None = None,
    clock: float | None = None,
    fps: float | None = None,
    track_ids: Sequence[int | None] | None = None,
    regions: Regions | None = None,
) -> np.ndarray:
    """Returns a copy of ``image`` with ``detections`` drawn on it.

    Each box's label tag sits above the box; with no room there it goes inside
    the box at its top. The header (stream name, clock, fps) is a tag at the
    frame's top-left corner; a label tag that would fall under it, such as
    the tag of a box at the top edge, is drawn just below the header instead,
    so both stay readable. Tags clear of the header are where they would be
    without it.

    Args:
        image: ``(H, W, 3) uint8`` RGB frame; not modified.
        detections: Boxes in the frame's pixels.
        stream_name: Shown top left with ``clock`` (Unix time) and ``fps`` when given.
        clock: Unix time shown in the header, in local time.
        fps: Frame rate shown in the header.
        track_ids: Each box's track id (None: not a confirmed track), shown as ``#7`` in its tag.
        regions: The stream's zones and lines, drawn under the boxes.
    """
    canvas = image.copy()
    height, width = canvas.shape[:2]
    style = Style.for_frame(width, height)
    header_text, header = "", None
    if stream_name is not None or clock is not None or fps is not None:
        header_text = _header_text(stream_name, clock, fps)
        header_w, header_h = _tag_size(header_text, style, width, height)
        header = (0, 0, header_w - 1, header_h - 1)
    if regions:
        _draw_regions(canvas, regions, style)
    ids = track_ids if track_ids is not None else [None] * len(detections)
    for box, score, label, track_id in zip(detections.xyxy, detections.confidence, detections.labels, ids,
                                           strict=True):
        colour = label_colour(label)
        x0, y0 = int(np.clip(box[0], 0, width - 1)), int(np.clip(box[1], 0, height - 1))
        x1, y1 = int(np.clip(box[2], 0, width - 1)), int(np.clip(box[3], 0, height - 1))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, style.thickness)
        text = f"{label} {score:.2f}" if track_id is None else f"{label} #{track_id} {score:.2f}"
        rect = _label_rect(_tag_size(text, style, width, height), (x0, y0), width, height, header)
        _paint_tag(canvas, text, rect, colour, style)
    if header is not None:
        _paint_tag(canvas, header_text, header, HEADER_COLOUR, style)
    return canvas
