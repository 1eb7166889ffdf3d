"""The overlay renderer on frames with known boxes."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detect.records import Detections
from stream_detect.render import Style, draw_detections, label_colour


def one(label: str, box: tuple[float, float, float, float], score: float = 0.9) -> Detections:
    return Detections.from_lists([box], [score], [0], [label])


def test_box_border_has_the_label_colour_and_input_is_untouched() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    drawn = draw_detections(frame, one("car", (100, 120, 300, 280)))
    assert not frame.any()
    colour = np.array(label_colour("car"))
    for y, x in ((200, 100), (200, 300), (280, 200)):  # left, right and bottom edges
        assert np.array_equal(drawn[y, x], colour)
    assert not drawn[200, 200].any()  # inside the box stays untouched
    assert label_colour("car") == label_colour("car") != label_colour("person")


@pytest.mark.parametrize(
    "box",
    [(0, 0, 100, 80), (540, 0, 640, 80), (0, 280, 100, 360), (540, 280, 640, 360), (-30, -30, 700, 400)],
)
def test_label_tags_stay_inside_the_frame(box: tuple[float, float, float, float]) -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    width_label = "a-very-long-label-name"
    drawn = draw_detections(frame, one(width_label, box))
    colour = np.array(label_colour(width_label))
    tag_pixels = np.all(drawn == colour, axis=2)
    assert tag_pixels.any()
    # The filled tag is a solid rectangle of the label colour; it must be wholly visible:
    # its rows hold a run at least as wide as the text needs.
    style = Style.for_frame(640, 360)
    import cv2

    (text_w, _), _ = cv2.getTextSize(f"{width_label} 0.90", cv2.FONT_HERSHEY_SIMPLEX, style.font_scale,
                                     style.font_thickness)
    widest_run = max(int(row.sum()) for row in tag_pixels)
    assert widest_run >= text_w


@pytest.mark.parametrize(("width", "height"), [(160, 120), (3840, 2160)])
def test_small_and_4k_frames_render_legibly(width: int, height: int) -> None:
    frame = np.zeros((height, width, 3), np.uint8)
    box = (width * 0.2, height * 0.3, width * 0.6, height * 0.8)
    drawn = draw_detections(frame, one("dog", box), stream_name="cam", clock=1_700_000_000.0, fps=12.5)
    style = Style.for_frame(width, height)
    colour = np.array(label_colour("dog"))
    left = int(box[0])
    row = int(height * 0.55)
    line = np.all(drawn[row, max(0, left - 20) : left + 20] == colour, axis=1).sum()
    assert line >= style.thickness >= 2
    assert drawn[: height // 10, : width // 3].any()  # the stream name and clock are drawn top left


def test_scale_grows_with_the_frame() -> None:
    small, large = Style.for_frame(160, 120), Style.for_frame(3840, 2160)
    assert large.thickness > small.thickness and large.font_scale > small.font_scale
    assert large.thickness <= 12 and small.font_scale >= 0.3
