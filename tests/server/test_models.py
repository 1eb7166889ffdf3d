"""Several models in one process: each camera on its model, each model answering the API by its name."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from stream_detect.config import parse_config
from stream_detect.pipeline import Pipeline

from ..checkpoints import LABELS, build_tiny_detr, draw_scene
from .serving import open_ws, read_messages, serving

PET_LABELS = ("cat", "dog")


@pytest.fixture(scope="module")
def pets_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny DETR with another label set (random weights: it reports its labels at threshold 0)."""
    return build_tiny_detr(tmp_path_factory.mktemp("models") / "pets-detr", labels=PET_LABELS, seed=3)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_checkpoints_serve_two_cameras_and_answer_by_name(trained_detr_dir: Path, pets_detr_dir: Path) -> None:
    from transformers import pipeline as hf_pipeline

    from stream_detect.detect import load_detector

    from ..detect.test_hf_detector import assert_same_detections

    camera = {"kind": "synthetic", "fps": 5, "width": 160, "height": 120, "threshold": 0.0}
    config = parse_config({
        "model": {"id": str(trained_detr_dir), "device": "cpu"},
        "models": {"pets": {"id": str(pets_detr_dir), "device": "cpu", "threshold": 0.0}},
        "sources": [{**camera, "id": "shapes-cam"}, {**camera, "id": "pets-cam", "model": "pets"}],
    })
    with serving(Pipeline(config, load_detector)) as base, open_ws(base) as ws:
        messages = read_messages(ws, timeout_s=120, until=lambda got: {"shapes-cam", "pets-cam"} <= {
            m["stream"] for m in got if m["type"] == "detections" and m["detections"]})
        streams = {s["id"]: s for s in httpx.get(base + "/streams", timeout=10).json()["streams"]}
        image = png(draw_scene(np.random.default_rng(5))[0])
        answers = {name: httpx.post(f"{base}/models/{name}", content=image, timeout=60,
                                    headers={"Content-Type": "image/png", "x-use-cache": "false"})
                   for name in ("pets", trained_detr_dir.name, str(pets_detr_dir).strip("/"))}
        default = httpx.post(base + "/", content=image, timeout=60, headers={"Content-Type": "image/png"})
        unknown = httpx.post(base + "/models/nosuch", content=image, timeout=60)
        metrics = httpx.get(base + "/metrics", timeout=10).text
        health = httpx.get(base + "/healthz", timeout=10).json()

    detections = [m for m in messages if m["type"] == "detections"]
    shapes = [m for m in detections if m["stream"] == "shapes-cam"]
    pets = [m for m in detections if m["stream"] == "pets-cam"]
    # Each camera's messages name its model and carry its model's labels.
    assert shapes and {m["model"] for m in shapes} == {trained_detr_dir.name}
    assert pets and {m["model"] for m in pets} == {"pets"}
    assert {d["label"] for m in shapes for d in m["detections"]} <= set(LABELS)
    pet_labels = {d["label"] for m in pets for d in m["detections"]}
    assert pet_labels and pet_labels <= set(PET_LABELS)
    assert streams["pets-cam"]["model"] == "pets" and streams["shapes-cam"]["model"] == "default"

    # POST /models/NAME answers with that model, exactly as transformers.pipeline does.
    references = {"pets": hf_pipeline("object-detection", model=str(pets_detr_dir), device="cpu"),
                  "default": hf_pipeline("object-detection", model=str(trained_detr_dir), device="cpu")}
    with Image.open(io.BytesIO(image)) as picture:
        expected_pets = references["pets"](picture.convert("RGB"), threshold=0.0)
        expected_default = references["default"](picture.convert("RGB"), threshold=0.5)
    for name in ("pets", str(pets_detr_dir).strip("/")):
        assert answers[name].status_code == 200
    # The API's default threshold is the pipeline's (0.5) unless a model sets its own: pets sets 0.0.
    assert_same_detections(answers["pets"].json(), expected_pets)
    assert answers[str(pets_detr_dir).strip("/")].json() == answers["pets"].json()
    assert_same_detections(answers[trained_detr_dir.name].json(), expected_default)
    assert_same_detections(default.json(), expected_default)

    # An unknown name: 404 with the names that are served.
    assert unknown.status_code == 404
    assert "nosuch" in unknown.json()["error"] and {"pets", "default"} <= set(unknown.json()["models"])

    # Each model's batches in /metrics; each model's state in /healthz.
    assert 'stream_detect_batch_size_count{model="pets"}' in metrics
    assert 'stream_detect_batch_size_count{model="default"}' in metrics
    assert health["status"] == "ok" and set(health["models"]) == {"default", "pets"}


def test_a_source_naming_an_unknown_model_is_one_line() -> None:
    from stream_detect.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        parse_config({"models": {"pets": {"id": "x"}},
                      "sources": [{"kind": "synthetic", "id": "cam", "model": "people"}]})
    assert "'people'" in str(refused.value) and "pets" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigError):
        parse_config({"models": {"default": {"id": "x"}}})


@pytest.mark.timeout(60)
def test_a_camera_changed_to_an_unknown_model_is_refused_and_keeps_running() -> None:
    from stream_detect.detect.fake import FakeDetector

    config = parse_config({
        "model": {"id": "fake"}, "models": {"pets": {"id": "fake"}},
        "sources": [{"kind": "synthetic", "id": "cam", "fps": 5, "width": 160, "height": 120}],
    })
    with serving(Pipeline(config, lambda model: FakeDetector(model_id=model.served_id()))) as base, \
            httpx.Client(base_url=base, timeout=30) as http:
        refused = http.put("/streams/cam", json={"kind": "synthetic", "model": "people"})
        error = refused.json()["error"]
        assert refused.status_code == 422 and "'people'" in error and "pets" in error
        assert http.post("/streams", json={"id": "new", "kind": "synthetic", "model": "people"}).status_code == 422
        streams = {s["id"]: s for s in http.get("/streams").json()["streams"]}
        assert set(streams) == {"cam"} and streams["cam"]["model"] == "default"
        moved = http.put("/streams/cam", json={"kind": "synthetic", "model": "pets", "fps": 5})
        assert moved.status_code == 200 and moved.json()["model"] == "pets"
        with open_ws(base, "streams=cam") as ws:
            messages = read_messages(ws, timeout_s=20, until=lambda got: any(m["type"] == "detections" for m in got))
        assert {m["model"] for m in messages if m["type"] == "detections"} == {"pets"}
