"""The bundled demo model and ``stream-detect demo``: accuracy with known ground truth, offline."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import cv2
import httpx
import jsonschema
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stream_detect.config import ModelConfig
from stream_detect.detect.hf import DEMO_MODEL, HFDetector
from stream_detect.evaluation import Truth, mean_average_precision, precision_recall
from stream_detect.records import Detections
from stream_detect.sources.synthetic import SyntheticScene

from .processes import Served, serving_command

pytestmark = pytest.mark.skipif(not (DEMO_MODEL / "config.json").exists(), reason="the demo model is not built")


def camera_frames(seed: int, count: int, every: int) -> list[np.ndarray]:
    """``count`` frames of the demo camera, one every ``every`` scene steps."""
    scene = SyntheticScene(640, 360, seed=seed)
    images = []
    for _ in range(count):
        for _ in range(every):
            scene.step()
        images.append(scene.render()[0])
    return images


@pytest.fixture(scope="module")
def demo_detector() -> HFDetector:
    return HFDetector.load(ModelConfig(id="demo", device="cpu"))


def test_demo_model_ships_in_hugging_face_format() -> None:
    config = json.loads((DEMO_MODEL / "config.json").read_text())
    assert config["architectures"] == ["RTDetrForObjectDetection"]  # see scripts/train_demo_model.py
    assert set(config["id2label"].values()) == {"circle", "square", "triangle"}
    assert (DEMO_MODEL / "model.safetensors").exists() and (DEMO_MODEL / "preprocessor_config.json").exists()
    size = sum(p.stat().st_size for p in DEMO_MODEL.iterdir())
    assert size <= 15 * 2**20


def test_demo_checkpoint_is_exactly_the_architecture_and_documents_its_training() -> None:
    from transformers import AutoModelForObjectDetection

    # Training-only heads and batch norms leave no weight behind, and none is missing.
    _, info = AutoModelForObjectDetection.from_pretrained(DEMO_MODEL, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    card = (DEMO_MODEL / "README.md").read_text()
    assert "scripts/train_demo_model.py" in card and "mAP" in card


@pytest.mark.timeout(600)
def test_map_on_held_out_frames(demo_detector: HFDetector) -> None:
    scene = SyntheticScene(640, 360, seed=424_242)  # a seed training never used
    detections: list[Detections] = []
    truths: list[list[Truth]] = []
    for _ in range(200):
        for _ in range(5):
            scene.step()
        image, truth = scene.render()
        truths.append([Truth(t.label, t.box) for t in truth])
        detections.extend(demo_detector.detect([image], 0.05))
    scores = mean_average_precision(detections, truths, iou_threshold=0.5)
    assert scores["mAP"] >= 0.9, scores


@pytest.mark.timeout(300)
def test_demo_detections_equal_the_transformers_pipeline(demo_detector: HFDetector) -> None:
    from PIL import Image
    from transformers import pipeline

    from stream_detect.serialize import to_hf_elements

    from .detect.test_hf_detector import assert_same_detections

    reference = pipeline("object-detection", model=str(DEMO_MODEL), device="cpu")
    images = camera_frames(seed=99, count=4, every=9)
    compared = 0
    for image, detections in zip(images, demo_detector.detect(images, 0.3), strict=True):
        theirs = reference(Image.fromarray(image), threshold=0.3)
        assert_same_detections(to_hf_elements(detections), theirs)
        compared += len(theirs)
    assert compared >= 4, "the frames hold shapes the model finds"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_demo_model_gives_torch_answers_on_the_exporting_backends(demo_detector: HFDetector, kind: str) -> None:
    """RT-DETR exports with its input sides fixed: the backend traces it at the processor's one size."""
    from stream_detect.detect.backends import installed

    from .detect.test_backends import assert_close

    if not installed(kind):
        pytest.skip(f"{kind} is not installed")
    images = camera_frames(seed=11, count=3, every=13)
    exported = HFDetector.load(ModelConfig(id="demo", device="cpu", backend=kind, precision="fp32"))
    try:
        results = exported.detect(images, 0.05)
    finally:
        exported.close()
    reference = demo_detector.detect(images, 0.05)
    assert sum(len(r) for r in reference) >= 3, "the comparison must compare something"
    for ours, theirs in zip(results, reference, strict=True):
        assert_close(ours, theirs, box_px=0.5, score_tol=1e-3)


def other_scene(rng: np.random.Generator, width: int = 640, height: int = 480) -> tuple[np.ndarray, list[Truth]]:
    """Shapes drawn with plain OpenCV calls, not the synthetic camera's code."""
    if rng.random() < 0.5:  # photo-like: smooth light and shade
        low = rng.integers(30, 200, (6, 8, 3)).astype(np.uint8)
        image = cv2.GaussianBlur(cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 15)
    else:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    truths: list[Truth] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 5))):
        size = int(rng.uniform(0.05, 0.40) * min(width, height))
        for _attempt in range(20):
            x0, y0 = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
            box = (x0, y0, x0 + size, y0 + size)
            if all(box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3] for t in taken):
                break
        else:
            continue
        taken.append(box)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        thickness = -1 if rng.random() < 0.6 else max(2, size // 15)
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.circle(image, (x0 + size // 2, y0 + size // 2), size // 2, colour, thickness)
            label = "circle"
        elif kind == 1:
            cv2.rectangle(image, (x0, y0), (x0 + size, y0 + size), colour, thickness)
            label = "square"
        else:
            points = np.array([[x0 + size // 2, y0], [x0, y0 + size], [x0 + size, y0 + size]], np.int32)
            if thickness < 0:
                cv2.fillPoly(image, [points], colour)
            else:
                cv2.polylines(image, [points], True, colour, thickness)
            label = "triangle"
        truths.append(Truth(label, (float(x0), float(y0), float(x0 + size), float(y0 + size))))
    return image, truths


@pytest.mark.timeout(600)
def test_finds_shapes_drawn_by_other_code(demo_detector: HFDetector) -> None:
    rng = np.random.default_rng(7)
    detections, truths = [], []
    for _ in range(100):
        image, truth = other_scene(rng)
        truths.append(truth)
        detections.extend(demo_detector.detect([image], 0.5))
    precision, recall = precision_recall(detections, truths, iou_threshold=0.5)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)


HANG_S = 120
"""Bound on each wait of the served demo: it only catches a hang. Loading torch and
the model on a loaded machine can take a minute; no wait here measures speed."""


def first_labels(ws: ClientConnection, served: Served) -> set[str]:
    """The labels of the first ``detections`` message that carries any."""
    deadline = time.monotonic() + HANG_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            break
        except ConnectionClosed as closed:
            pytest.fail(f"the demo closed the websocket ({closed}); stderr: {served.stderr[-2000:]}")
        if message["type"] == "detections" and message["detections"]:
            return {d["label"] for d in message["detections"]}
    pytest.fail(f"no labelled detections within {HANG_S} s; stderr: {served.stderr[-2000:]}")


# Above the sum of the bounds: the process's start, the websocket's opening,
# the first labels and the stop.
@pytest.mark.timeout(5 * HANG_S)
def test_demo_runs_offline_and_streams_shape_detections() -> None:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with serving_command("demo", "--port", "0", env=env, stop=signal.SIGINT) as served:
        assert served.base.startswith("http://127.0.0.1:")
        url = served.base.replace("http://", "ws://") + "/ws"
        with connect(url, open_timeout=HANG_S) as ws:
            labels = first_labels(ws, served)
        served.process.send_signal(signal.SIGINT)
        served.process.wait(HANG_S)  # serving_command's own stop would give up after 15 s
    assert labels and labels <= {"circle", "square", "triangle"}, labels
    assert served.process.returncode in (0, 130, -signal.SIGINT), "Ctrl-C stops the demo cleanly"


SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "stream_detect" / "schema" /
                     "messages.schema.json").read_text())


def first_event(ws: ClientConnection, served: Served, kind: str | None = None) -> tuple[dict, list[str]]:
    """The first event message (of ``kind``) within HANG_S, and the types of every message seen until then."""
    types: list[str] = []
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        types.append(message["type"])
        if message["type"] == "event" and kind in (None, message["kind"]):
            return message, types
    pytest.fail(f"no event within {HANG_S} s (saw {sorted(set(types))}); stderr: {served.stderr[-2000:]}")


@pytest.mark.timeout(5 * HANG_S)
def test_the_demo_camera_has_a_zone_and_a_line_and_its_events_are_kept() -> None:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with serving_command("demo", "--port", "0", env=env) as served:
        base = served.base.replace("http://", "ws://")
        with connect(f"{base}/ws?types=event,counts", open_timeout=HANG_S) as ws:
            event, types = first_event(ws, served)
        assert set(types) <= {"event", "counts"}, types  # what the client asked for, nothing else
        jsonschema.validate(event, SCHEMA)
        assert event["stream"] == "demo-camera" and event["label"] in {"circle", "square", "triangle"}
        with connect(f"{base}/ws?types=detections", open_timeout=HANG_S) as ws:
            tracked = [d for _ in range(100) for d in json.loads(ws.recv(timeout=HANG_S))["detections"]
                       if "track_id" in d]
            assert tracked, "the demo camera's detections carry track ids"
        stream = httpx.get(f"{served.base}/streams", timeout=10).json()["streams"][0]
        assert stream["tracking"] is True and [z["name"] for z in stream["zones"]] == ["right"]
        assert [line["name"] for line in stream["lines"]] == ["middle"]
        deadline = time.monotonic() + 10  # the history's writer commits within about a second
        while time.monotonic() < deadline:
            kept = httpx.get(f"{served.base}/events/{event['id']}", timeout=10)
            if kept.status_code == 200:
                break
            time.sleep(0.2)
        assert kept.status_code == 200 and kept.json() == event
        with connect(f"{base}/ws?types=event", open_timeout=HANG_S) as ws:
            ended, _ = first_event(ws, served, "object.end")
        snapshot = httpx.get(f"{served.base}/events/{ended['id']}/snapshot.jpg?boxes=1", timeout=10)
        assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
        deadline = time.monotonic() + HANG_S  # the clip is written post_s (5 s) after the object's end
        while time.monotonic() < deadline:
            clip = httpx.get(f"{served.base}/events/{ended['id']}/clip.mp4", headers={"Range": "bytes=0-99"},
                             timeout=10)
            if clip.status_code != 404:
                break
            time.sleep(0.5)
        assert clip.status_code == 206 and clip.headers["content-type"] == "video/mp4", clip.text[:200]
        assert clip.content[4:8] == b"ftyp"  # an MP4 from its first byte
