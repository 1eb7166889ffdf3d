"""The motion gate on drawn scenes: a textured still background with sensor noise and a bright disc."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from stream_detect.bench import motion as motion_bench
from stream_detect.motion import MotionConfig, MotionDecision, MotionGate, motion_enabled
from stream_detect.sources.synthetic import SyntheticScene

NOISE_SIGMA = 9.0  # grey levels per channel, as the synthetic camera's
RADIUS = 25
DISC = (230, 210, 150)


class Camera:
    """A fixed camera on a still, textured scene: blotches and stripes, fresh noise in every frame."""

    def __init__(self, width: int = 640, height: int = 360, seed: int = 0, radius: int = RADIUS) -> None:
        self.width, self.height, self.radius = width, height, radius
        self._rng = np.random.default_rng(seed)
        low = self._rng.integers(20, 120, (max(2, height // 30), max(2, width // 30), 3), dtype=np.uint8)
        texture = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        texture += (10 * np.sin((xx + 0.5 * yy) * 2 * math.pi / 23))[..., None]
        self.background = np.clip(texture, 0, 255).astype(np.uint8)
        self._noise = self._rng.normal(0, NOISE_SIGMA, (height + 97, width + 97, 3)).astype(np.int16)

    def frame(self, discs: Sequence[tuple[float, float]] = (), brightness: int = 0) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB: the scene, discs centred at ``discs`` (pixels), everything ``brightness`` up."""
        image = self.background.copy()
        for x, y in discs:
            cv2.circle(image, (round(x * 16), round(y * 16)), self.radius * 16, DISC, -1, cv2.LINE_AA, shift=4)
        dx, dy = (int(value) for value in self._rng.integers(0, 97, 2))
        noisy = image.astype(np.int16) + brightness + self._noise[dy : dy + self.height, dx : dx + self.width]
        return np.clip(noisy, 0, 255).astype(np.uint8)


def run(gate: MotionGate, frames: Sequence[np.ndarray], fps: float, start: int = 0) -> list[MotionDecision]:
    return [gate.observe(image, (start + index) / fps) for index, image in enumerate(frames)]


@pytest.mark.parametrize(("width", "height"), [(640, 360), (1280, 720)])
def test_a_still_noisy_scene_does_not_move(width: int, height: int) -> None:
    camera = Camera(width, height)
    frames = [camera.frame([(width / 3, height / 2)]) for _ in range(60)]
    decisions = run(MotionGate(MotionConfig(max_idle_s=60)), frames, fps=10)
    assert decisions[0].reason == "first"
    assert [d.reason for d in decisions[1:]] == ["still"] * 59
    assert max(d.area for d in decisions) == 0
    # The noise is there to be seen: a gate that barely blurs or thresholds would move on it.
    touchy = run(MotionGate(MotionConfig(threshold=1, min_area=0.0001, max_idle_s=60)), frames, fps=10)
    assert sum(d.reason == "motion" for d in touchy[1:]) >= 50


def test_a_moving_disc_moves_from_its_first_step() -> None:
    camera = Camera()
    still = [camera.frame([(200, 180)]) for _ in range(20)]
    moving = [camera.frame([(200 + 6 * step, 180)]) for step in range(1, 11)]
    decisions = run(MotionGate(MotionConfig()), [*still, *moving], fps=10)
    assert all(not d.moved for d in decisions[1:20])
    assert [d.reason for d in decisions[20:]] == ["motion"] * 10
    # The area is the disc's new and old places, the old fading as the background takes it in.
    disc_area = math.pi * RADIUS**2 / (camera.width * camera.height)
    assert decisions[20].area >= 0.002
    assert all(d.area <= 3 * disc_area for d in decisions[20:])


def test_a_1080p_frame_shrinks_in_two_steps_and_sees_the_disc() -> None:
    camera = Camera(1920, 1080, radius=75)  # halved twice to 480 wide, then resized to 320
    frames = [camera.frame([(600, 540)]) for _ in range(5)]
    frames += [camera.frame([(600 + 9 * step, 540)]) for step in range(1, 6)]
    decisions = run(MotionGate(MotionConfig()), frames, fps=10)
    assert [d.reason for d in decisions] == ["first"] + ["still"] * 4 + ["motion"] * 5


def test_the_synthetic_camera_moves_on_every_frame() -> None:
    scene = SyntheticScene(640, 360, seed=0)  # its shapes never stop
    gate = MotionGate(MotionConfig(max_idle_s=3600))
    decisions = [gate.observe(scene.next_frame()[0], index / 10) for index in range(60)]
    assert [d.reason for d in decisions] == ["first"] + ["motion"] * 59


def left_part_mask(units: str, width: int) -> dict[str, object]:
    right = 0.45 if units == "fraction" else 0.45 * width
    bottom = 1 if units == "fraction" else 10_000  # past the frame's edge is allowed in pixels
    return {"polygon": [[0, 0], [right, 0], [right, bottom], [0, bottom]], "units": units}


@pytest.mark.parametrize("units", ["fraction", "px"])
def test_a_disc_moving_inside_a_mask_is_ignored(units: str) -> None:
    camera = Camera()
    # The disc's right edge stays 20 px inside the mask's edge at x = 288.
    frames = [camera.frame([(60 + 6 * step, 180)]) for step in range(30)]
    masked = run(MotionGate(MotionConfig(masks=(left_part_mask(units, camera.width),))), frames, fps=10)
    assert [d.reason for d in masked[1:]] == ["still"] * 29
    unmasked = run(MotionGate(MotionConfig()), frames, fps=10)
    assert [d.reason for d in unmasked[1:]] == ["motion"] * 29
    # Outside the mask the same movement is seen.
    outside = [camera.frame([(360 + 6 * step, 180)]) for step in range(30)]
    seen = run(MotionGate(MotionConfig(masks=(left_part_mask(units, camera.width),))), outside, fps=10)
    assert [d.reason for d in seen[1:]] == ["motion"] * 29


@pytest.mark.parametrize("masks", [(), ({"polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},)])
def test_lights_on_are_motion_for_one_frame(masks: tuple[dict[str, object], ...]) -> None:
    camera = Camera()
    frames = [camera.frame([(400, 180)]) for _ in range(10)]
    frames += [camera.frame([(400, 180)], brightness=60) for _ in range(30)]  # and they stay on
    frames += [camera.frame([(400, 180)]) for _ in range(30)]  # and off again
    decisions = run(MotionGate(MotionConfig(masks=masks)), frames, fps=10)
    moved = [(index, d.reason) for index, d in enumerate(decisions) if d.moved]
    # With half the frame masked, the watched half all changing is still a global change.
    assert moved == [(0, "first"), (10, "sudden"), (40, "sudden")]
    assert decisions[10].area >= 0.6 * (1 if not masks else 0.5)


def test_lights_on_while_the_disc_moves_leave_the_disc_seen() -> None:
    camera = Camera()
    frames = [camera.frame([(200, 180)]) for _ in range(10)]
    frames += [camera.frame([(200 + 6 * step, 180)], brightness=60) for step in range(1, 11)]
    decisions = run(MotionGate(MotionConfig()), frames, fps=10)
    assert [d.reason for d in decisions[10:]] == ["sudden"] + ["motion"] * 9


@pytest.mark.parametrize("fps", [2, 25])
def test_max_idle_counts_from_the_last_frame_let_through(fps: int) -> None:
    camera = Camera(320, 180)
    gate = MotionGate(MotionConfig(max_idle_s=10))
    t = 0.0
    moved: list[tuple[float, str]] = []
    for index in range(25 * fps + 1):
        image = camera.frame([(100, 90)] if index >= 7 * fps else [])  # the disc appears at t = 7 and stays
        decision = gate.observe(image, t)
        if decision.moved:
            moved.append((round(t, 6), decision.reason))
        t += 1 / fps  # pts summed frame by frame carry rounding: 10 s may come out as 9.999999999
    motion = [at for at, reason in moved if reason == "motion"]
    assert motion and motion[0] == 7 and motion[-1] <= 8  # then the background has taken the disc in
    assert [entry for entry in moved if entry[1] != "motion"] == [(0, "first"), (round(motion[-1] + 10, 6), "idle")]


@pytest.mark.parametrize("fps", [2, 25])
def test_max_idle_on_a_scene_that_never_moves(fps: int) -> None:
    camera = Camera(320, 180)
    gate = MotionGate(MotionConfig(max_idle_s=10))
    moved = [(index / fps, d.reason) for index in range(25 * fps)
             if (d := gate.observe(camera.frame(), index / fps)).moved]
    assert moved == [(0, "first"), (10, "idle"), (20, "idle")]


def test_a_new_frame_size_starts_over_with_the_masks_in_its_pixels() -> None:
    small, large = Camera(640, 360, seed=1), Camera(1280, 720, seed=2)
    config = MotionConfig(masks=({"polygon": [[0, 0], [0.45, 0], [0.45, 1], [0, 1]]},))
    gate = MotionGate(config)
    decisions = run(gate, [small.frame([(60 + 6 * step, 180)]) for step in range(10)], fps=10)
    assert [d.reason for d in decisions] == ["first"] + ["still"] * 9
    # Twice the size: the same part of the frame is masked, in the new frame's pixels.
    inside = run(gate, [large.frame([(120 + 12 * step, 360)]) for step in range(10)], fps=10, start=10)
    assert [d.reason for d in inside] == ["first"] + ["still"] * 9
    outside = run(gate, [large.frame([(720 + 12 * step, 360)]) for step in range(10)], fps=10, start=20)
    assert [d.reason for d in outside[1:]] == ["motion"] * 9
    back = run(gate, [small.frame() for _ in range(5)], fps=10, start=30)
    assert [d.reason for d in back] == ["first"] + ["still"] * 4


def test_pts_going_back_starts_over() -> None:
    camera = Camera(320, 180)
    gate = MotionGate(MotionConfig())
    assert [gate.observe(camera.frame(), t).reason for t in (100.0, 100.1, 100.2)] == ["first", "still", "still"]
    assert [gate.observe(camera.frame(), t).reason for t in (0.0, 0.1, 9.9, 10.0)] == [
        "first", "still", "still", "idle"]


def test_frames_it_cannot_read_are_refused() -> None:
    gate = MotionGate(MotionConfig())
    with pytest.raises(ValueError, match="uint8"):
        gate.observe(np.zeros((90, 160), np.uint8), 0.0)
    with pytest.raises(ValueError, match="uint8"):
        gate.observe(np.zeros((90, 160, 3), np.float32), 0.0)
    with pytest.raises(ValueError, match="finite"):
        gate.observe(np.zeros((90, 160, 3), np.uint8), math.nan)


def acceptance_scene(speed: float, seconds: int = 60, fps: int = 10) -> tuple[list[np.ndarray], list[float]]:
    """Frames where the disc moves ``speed`` px per frame during 2 s of every 10 s (bouncing), and each frame's step."""
    camera = Camera(640, 360, seed=3)
    x, direction = 320.0, 1.0
    frames, steps = [], []
    for index in range(seconds * fps):
        step = 0.0
        if 4 <= (index / fps) % 10 < 6:
            if not RADIUS + speed <= x + direction * speed <= camera.width - RADIUS - speed:
                direction = -direction
            x += direction * speed
            step = speed
        frames.append(camera.frame([(x, 150 + 60 * math.sin(x / 80))]))
        steps.append(step)
    return frames, steps


@pytest.mark.parametrize("speed", [2, 8, 24])
def test_acceptance_scene_moving_a_fifth_of_the_time(speed: float) -> None:
    """The bound: a disc 50 px across moving 2 px or more per 640x360 frame (1 px of the compared 320x180
    frame) is seen on every frame it moves, and the gate lets through at most 35% of the frames.

    At 1 px per frame only the first step of each movement is missed (measured, not asserted here)."""
    frames, steps = acceptance_scene(speed)
    decisions = run(MotionGate(MotionConfig()), frames, fps=10)
    missed = [index for index, (step, d) in enumerate(zip(steps, decisions, strict=True)) if step and not d.moved]
    assert missed == []
    share = sum(d.moved for d in decisions) / len(decisions)
    assert 0.2 <= share <= 0.35
    # Once the disc stops, motion ends within a second (the background takes it in).
    stopped = [index for index, step in enumerate(steps) if not step and index and steps[index - 1]]
    for index in stopped:
        assert not any(d.reason == "motion" for d in decisions[index + 10 : index + 30])


def test_a_slower_background_catches_a_crawl_the_default_misses() -> None:
    frames, steps = acceptance_scene(speed=0.25, seconds=20)  # 2.5 px a second
    moving = [index for index, step in enumerate(steps) if step]
    default = run(MotionGate(MotionConfig()), frames, fps=10)
    patient = run(MotionGate(MotionConfig(background_s=2)), frames, fps=10)
    assert sum(default[index].moved for index in moving) <= 5
    assert sum(patient[index].moved for index in moving) >= len(moving) / 2


def test_motion_enabled_defaults_to_live_sources_only() -> None:
    assert motion_enabled(MotionConfig(), live=True) is True
    assert motion_enabled(MotionConfig(), live=False) is False
    assert motion_enabled(MotionConfig(enabled=True), live=False) is True
    assert motion_enabled(MotionConfig(enabled=False), live=True) is False


def test_settings_are_strict() -> None:
    config = MotionConfig.model_validate({"threshold": 30, "masks": [{"polygon": [[0, 0], [1, 0], [1, 1]]}]})
    assert config.masks[0].units == "fraction"
    with pytest.raises(ValidationError, match="extra"):
        MotionConfig.model_validate({"treshold": 30})
    with pytest.raises(ValidationError, match=r"sudden_area 0\.01 must be larger than min_area 0\.02"):
        MotionConfig(min_area=0.02, sudden_area=0.01)
    with pytest.raises(ValidationError, match="no area"):
        MotionConfig.model_validate({"masks": [{"polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]})
    with pytest.raises(ValidationError, match="less than or equal to 254"):
        MotionConfig(threshold=255)  # nothing can differ by more than 255
    with pytest.raises(ValidationError, match="frozen"):
        config.threshold = 10  # type: ignore[misc]


def test_the_bench_times_both_sizes_and_every_shrink(capsys: pytest.CaptureFixture[str]) -> None:
    assert motion_bench.main(["--frames", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    gate = [line for line in lines if line.startswith("gate.observe")]
    assert len(gate) == 2 and "1280x720" in gate[0] and "640x360" in gate[1]
    assert all("'motion'" in line for line in gate)  # the disc moves in every frame
    for what in motion_bench.DOWNSCALES:
        assert sum(line.startswith(what) for line in lines) == 2
    assert "load average" in lines[0]
