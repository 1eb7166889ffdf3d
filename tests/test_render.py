"""The overlay renderer on frames with known boxes."""

from __future__ import annotations

from collections.abc import Callable

import cv2
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


def with_header(image: np.ndarray, detections: Detections) -> np.ndarray:
    return draw_detections(image, detections, stream_name="cam", clock=1_700_000_000.0, fps=12.5)


def header_rows(width: int, height: int) -> int:
    """How many rows the header takes: drawn alone on a blank frame."""
    alone = with_header(np.zeros((height, width, 3), np.uint8), Detections.empty())
    return int(np.flatnonzero(alone.any(axis=(1, 2)))[-1]) + 1


def label_tag(label: str, width: int, height: int) -> np.ndarray:
    """The tag of ``label`` as drawn for a box far from every edge, cropped from a blank frame."""
    top = height // 2
    box = (width / 4, top, width / 2, height - 10)
    drawn = draw_detections(np.zeros((height, width, 3), np.uint8), one(label, box))
    tag_top = int(np.flatnonzero(np.all(drawn[:top] == label_colour(label), axis=2).any(axis=1))[0])
    cols = np.flatnonzero(np.all(drawn[tag_top] == label_colour(label), axis=1))  # a padding row: no text
    return drawn[tag_top:top, cols[0] : cols[-1] + 1]  # the tag ends where the box begins


def find_exactly(image: np.ndarray, patch: np.ndarray) -> tuple[int, int] | None:
    """The top-left ``(x, y)`` where ``patch`` appears pixel for pixel in ``image``, if it does."""
    scores = cv2.matchTemplate(image.astype(np.float32), patch.astype(np.float32), cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(scores)
    found = image[y : y + patch.shape[0], x : x + patch.shape[1]]
    return (x, y) if np.array_equal(found, patch) else None


@pytest.mark.parametrize(
    "box_top",
    [lambda band: 0, lambda band: 4, lambda band: band + 2],  # the last one's tag above would overlap the header
    ids=["at-the-top-edge", "near-the-top-edge", "just-below-the-header"],
)
def test_a_label_at_the_top_edge_is_not_hidden_by_the_header(box_top: Callable[[int], int]) -> None:
    width, height = 640, 360
    band = header_rows(width, height)
    top = box_top(band)
    drawn = with_header(np.zeros((height, width, 3), np.uint8), one("car", (0, top, 200, 300)))
    found = find_exactly(drawn, label_tag("car", width, height))
    assert found is not None, "the label tag is wholly visible somewhere"
    x, y = found
    assert y >= band and x == 0, (found, band)  # below the header, at the box's left edge
    assert y <= max(top, band) + 1  # and still at the top of its box


@pytest.mark.parametrize("box", [(300, 150, 500, 300), (520, 0, 640, 100), (0, 250, 200, 350)])
def test_labels_clear_of_the_header_stay_where_they_were(box: tuple[float, float, float, float]) -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    header = with_header(frame, Detections.empty()).any(axis=2)
    headed = with_header(frame, one("car", box))
    plain = draw_detections(frame, one("car", box))
    assert np.array_equal(headed[~header], plain[~header])
    tag = label_tag("car", 640, 360)
    assert find_exactly(plain, tag) is not None
    assert find_exactly(headed, tag) == find_exactly(plain, tag)


def test_a_track_id_widens_the_tag_and_an_unconfirmed_box_is_drawn_without_one() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    boxes = Detections.from_lists([(100, 120, 300, 280)], [0.9], [0], ["car"])
    plain = draw_detections(frame, boxes)
    unconfirmed = draw_detections(frame, boxes, track_ids=[None])
    tracked = draw_detections(frame, boxes, track_ids=[17])
    assert np.array_equal(plain, unconfirmed)
    colour = np.array(label_colour("car"))
    tag_width = [int(np.all(image[100:117] == colour, axis=2).any(axis=0).sum()) for image in (plain, tracked)]
    assert tag_width[1] > tag_width[0]  # "car #17 0.90" is wider than "car 0.90"


def test_zones_and_lines_are_drawn_where_they_are_with_the_in_tick() -> None:
    from stream_detect.render import LINE_COLOUR, ZONE_COLOUR, Regions

    frame = np.zeros((360, 640, 3), np.uint8)
    regions = Regions(zones=(("porch", np.array([[400, 40], [600, 40], [600, 300], [400, 300]], float)),),
                      lines=(("gate", (200.0, 20.0), (200.0, 340.0)),))
    drawn = draw_detections(frame, Detections.empty(), regions=regions)
    assert np.array_equal(drawn[170, 600], np.array(ZONE_COLOUR))  # the zone's right edge
    assert np.array_equal(drawn[100, 200], np.array(LINE_COLOUR))  # on the line
    line_pixels = np.all(drawn == np.array(LINE_COLOUR), axis=2)
    # A line drawn top to bottom has its 'in' side on the right: the tick points there.
    assert line_pixels[170:190, 205:240].any() and not line_pixels[170:190, 160:195].any()
    assert not drawn[200, 500].any()  # zones are outlined, not filled
