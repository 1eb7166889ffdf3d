"""The Hugging Face Inference API endpoint, driven by real HF clients."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import requests
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image

from stream_detect.config import ModelConfig, ServerConfig, parse_config
from stream_detect.detect.base import Detector
from stream_detect.pipeline import Pipeline
from stream_detect.records import Detections
from stream_detect.sources.synthetic import GroundTruth, SyntheticScene

from ..faults.helpers import thread_count
from .serving import serving


class BrightnessDetector:
    """One box per image around its pixels brighter than 128; score = their share.

    Deterministic and image-dependent, so each answer can be checked exactly.
    """

    model_id = "acme/bright-detector"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []
        self.batch_pixels: list[int] = []
        self.loaded = threading.Event()  # set by a slow load when it is done

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        self.batch_sizes.append(len(images))
        self.batch_pixels.append(sum(image.shape[0] * image.shape[1] for image in images))
        time.sleep(self.delay_s)
        return [expected_detections(image).filter(threshold) for image in images]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width  # it looks at every pixel: nothing is reduced

    def close(self) -> None:
        pass


def expected_detections(image: np.ndarray) -> Detections:
    bright = image.mean(axis=2) > 128
    if not bright.any():
        return Detections.empty()
    ys, xs = np.nonzero(bright)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return Detections.from_lists([box], [float(bright.mean())], [1], ["bright"])


def png_with_square(width: int, height: int, x0: int, y0: int, size: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[y0 : y0 + size, x0 : x0 + size] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_answer(width: int, height: int, x0: int, y0: int, size: int) -> list[dict]:
    score = size * size / (width * height)
    return [{"label": "bright", "score": pytest.approx(score, abs=1e-4),
             "box": {"xmin": x0, "ymin": y0, "xmax": x0 + size, "ymax": y0 + size}}]


@pytest.fixture
def api_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, BrightnessDetector]]:
    options = getattr(request, "param", {})
    detector = BrightnessDetector(delay_s=options.get("delay_s", 0.0))
    load: Callable[[ModelConfig], Detector] = lambda model: detector  # noqa: E731
    if options.get("load_s"):
        def load(model: ModelConfig) -> Detector:
            time.sleep(options["load_s"])
            detector.loaded.set()
            return detector
    config = parse_config({"model": {"id": "acme/bright-detector", "max_batch_size": 8, "max_batch_wait_ms": 20}})
    server = ServerConfig(port=0, tokens=options.get("tokens", []), max_body_bytes=options.get("max_body", 2_000_000),
                          decode_pixels_in_flight=options.get("pixel_budget", 50_000_000))
    with serving(Pipeline(config, load), server) as base:
        yield base, detector


def wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("model never became ready")


@pytest.mark.timeout(60)
def test_inference_client_object_detection(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    wait_healthy(base)
    client = InferenceClient(base_url=base)
    image = png_with_square(100, 80, 10, 5, 70)
    result = client.object_detection(image)  # default threshold 0.5, as the HF pipeline
    assert [r.label for r in result] == ["bright"]
    assert (result[0].box.xmin, result[0].box.ymin, result[0].box.xmax, result[0].box.ymax) == (10, 5, 80, 75)
    assert result[0].score == pytest.approx(4900 / 8000, abs=1e-4)
    assert client.object_detection(image, threshold=0.7) == []
    assert len(client.object_detection(image, threshold=0.01)) == 1
    named = InferenceClient(model=f"{base}/models/acme/bright-detector")
    assert len(named.object_detection(image, threshold=0.01)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api_server", [{"tokens": ["hf_local_token"]}], indirect=True)
def test_inference_client_with_and_without_token(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    wait_healthy(base)
    image = png_with_square(64, 64, 0, 0, 32)
    answer = InferenceClient(base_url=base, token="hf_local_token").object_detection(image, threshold=0.1)
    assert [a.label for a in answer] == ["bright"]
    with pytest.raises(HfHubHTTPError) as refused:
        InferenceClient(base_url=base, token="hf_wrong").object_detection(image)
    assert refused.value.response.status_code == 401
    bare = requests.post(base, data=image, timeout=10)
    assert bare.status_code == 401 and "error" in bare.json()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api_server", [{"tokens": ["hf_local_token"]}], indirect=True)
def test_the_hf_page_snippets_work_unchanged(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    wait_healthy(base)
    api_url = f"{base}/models/acme/bright-detector"
    headers = {"Authorization": "Bearer hf_local_token"}
    data = png_with_square(120, 80, 10, 5, 70)

    def query(payload: bytes) -> list[dict]:
        response = requests.post(api_url, headers={"Content-Type": "image/png", **headers}, data=payload)
        return response.json()

    assert query(data) == expected_answer(120, 80, 10, 5, 70)
    as_json = {"inputs": base64.b64encode(data).decode(), "parameters": {"threshold": 0.1}}
    assert requests.post(api_url, headers=headers, json=as_json, timeout=10).json() == expected_answer(
        120, 80, 10, 5, 70
    )
    data_url = {"inputs": "data:image/png;base64," + base64.b64encode(data).decode()}
    assert requests.post(f"{base}/", headers=headers, json=data_url, timeout=10).json() == expected_answer(
        120, 80, 10, 5, 70
    )


@pytest.mark.timeout(60)
def test_errors_are_4xx_json(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    wait_healthy(base)
    image = png_with_square(32, 32, 0, 0, 8)
    cases = [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
        (dict(json={"inputs": "%%%notbase64"}), 400),
        (dict(json={"inputs": "https://example.com/cat.jpg"}), 400),
        (dict(json={"inputs": base64.b64encode(image).decode(), "parameters": {"threshold": "high"}}), 422),
        (dict(json={"inputs": base64.b64encode(image).decode(), "parameters": {"threshold": 1.5}}), 422),
        (dict(content=b"GIF89a-but-not-really"), 415),
        (dict(content=b"plain text"), 415),
        (dict(content=image[: len(image) // 2]), 400),
        (dict(content=b""), 400),
    ]
    for kwargs, status in cases:
        response = httpx.post(base, timeout=10, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, (kwargs, response.text)
        assert "error" in response.json()
    unknown = httpx.post(f"{base}/models/other/model", content=image, timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api_server", [{"max_body": 100_000}], indirect=True)
def test_oversized_body_is_refused_before_it_is_read(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 500000000\r\n\r\n")
        sock.sendall(b"\0" * 1000)  # far less than declared: an answer can only come from the header
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    streamed = httpx.post(base, content=iter([b"\0" * 60_000] * 3), timeout=10)
    assert streamed.status_code == 413


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api_server", [{"load_s": 2.0}], indirect=True)
def test_model_loading_answers_503_or_waits(api_server: tuple[str, BrightnessDetector]) -> None:
    base, _ = api_server
    image = png_with_square(32, 32, 0, 0, 30)
    loading = httpx.post(base, content=image, timeout=10)
    assert loading.status_code == 503
    assert loading.json()["estimated_time"] > 0 and "error" in loading.json()
    waited = httpx.post(base, content=image, headers={"x-wait-for-model": "true"}, timeout=20)
    assert waited.status_code == 200 and waited.json()[0]["label"] == "bright"


@pytest.mark.timeout(60)
def test_cache_answers_repeated_requests(api_server: tuple[str, BrightnessDetector]) -> None:
    base, detector = api_server
    wait_healthy(base)
    image = png_with_square(50, 50, 5, 5, 10)
    first = httpx.post(base, content=image, timeout=10)
    again = httpx.post(base, content=image, timeout=10)
    bypass = httpx.post(base, content=image, headers={"x-use-cache": "false"}, timeout=10)
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert bypass.headers["x-cache"] == "miss"
    assert first.json() == again.json() == bypass.json()
    assert sum(detector.batch_sizes) == 2


@pytest.mark.timeout(90)
@pytest.mark.parametrize("api_server", [{"delay_s": 0.2}], indirect=True)
def test_concurrent_clients_are_batched(api_server: tuple[str, BrightnessDetector]) -> None:
    base, detector = api_server
    wait_healthy(base)
    results: dict[int, object] = {}

    def client(i: int) -> None:
        size = 4 + i
        with httpx.Client(timeout=30) as http:
            payload = {"inputs": base64.b64encode(png_with_square(64, 64, i, i, size)).decode(),
                       "parameters": {"threshold": 0.001}}
            response = http.post(base, json=payload, headers={"x-use-cache": "0"})
            results[i] = (response.status_code, response.json(), size)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16
    for i, (status, answer, size) in results.items():  # type: ignore[misc]
        assert status == 200
        assert answer == expected_answer(64, 64, i, i, size)
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert max(detector.batch_sizes) > 1
    buckets = {line.split('le="')[1].split('"')[0]: float(line.split()[-1])
               for line in metrics.splitlines() if line.startswith("stream_detect_batch_size_bucket")}
    assert buckets["+Inf"] > buckets["1.0"], "the worker's metrics show batches larger than 1"
    openapi = httpx.get(f"{base}/openapi.json", timeout=5).json()
    assert "/models/{model_id}" in openapi["paths"] and "/" in openapi["paths"]


@pytest.mark.timeout(300)
def test_answers_equal_the_transformers_pipeline(trained_detr_dir: Path) -> None:
    from transformers import pipeline as hf_pipeline

    from stream_detect.detect import load_detector

    from ..checkpoints import draw_scene
    from ..detect.test_hf_detector import assert_same_detections

    config = parse_config({"model": {"id": str(trained_detr_dir), "device": "cpu"}})
    reference = hf_pipeline("object-detection", model=str(trained_detr_dir), device="cpu")
    rng = np.random.default_rng(21)
    with serving(Pipeline(config, load_detector)) as base:
        wait_healthy(base)
        client = InferenceClient(base_url=f"{base}/models/{trained_detr_dir.name}")
        compared = 0
        for _ in range(3):
            image, _ = draw_scene(rng)
            buffer = io.BytesIO()
            Image.fromarray(image).resize((320, 240)).save(buffer, format="PNG")
            ours = [e.__dict__ | {"box": e.box.__dict__} for e in client.object_detection(buffer.getvalue(),
                                                                                          threshold=0.05)]
            theirs = reference(Image.open(io.BytesIO(buffer.getvalue())), threshold=0.05)
            assert_same_detections(ours, theirs)
            compared += len(theirs)
    assert compared > 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("api_server", [{"delay_s": 0.2, "pixel_budget": 5_000_000}], indirect=True)
def test_decoded_pixels_in_flight_stay_within_the_budget(api_server: tuple[str, BrightnessDetector]) -> None:
    # This detector takes images as they are (nothing is reduced), so every
    # decoded pixel waits for it: 3 Mpx images, a 5 Mpx budget, one at a time.
    base, detector = api_server
    wait_healthy(base)
    requests_made = [(2000, 1500, 10 * i, 20 * i, 300 + i) for i in range(6)] + [(3000, 2000, 100, 50, 900)]
    results: dict[int, tuple[int, object]] = {}

    def client(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            payload = {"inputs": base64.b64encode(png_with_square(*requests_made[i])).decode(),
                       "parameters": {"threshold": 0.001}}
            response = http.post(base, json=payload)
            results[i] = (response.status_code, response.json())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests_made))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, spec in enumerate(requests_made):
        assert results[i] == (200, expected_answer(*spec)), i
    assert len(detector.batch_pixels) == len(requests_made)
    assert max(detector.batch_pixels) == 6_000_000, "the image over the budget took it all, alone"
    assert sorted(detector.batch_pixels)[:-1] == [3_000_000] * 6, "never two 3 Mpx images in flight"


def raw_post(port: int, body: bytes, headers: dict[str, str]) -> Any:
    """A POST over a plain asyncio connection (no resolver, no thread); returns (status, JSON)."""
    async def post() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                     f"{head}\r\n".encode() + body)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])
    return post()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api_server", [{"load_s": 4.0}], indirect=True)
def test_requests_waiting_for_the_model_hold_no_thread(api_server: tuple[str, BrightnessDetector]) -> None:
    base, detector = api_server
    port = int(base.rsplit(":", 1)[1])
    specs = [(64, 64, i % 10, i // 10, 50) for i in range(50)]  # scores 0.61: above the default threshold
    images = [(png_with_square(*spec), spec) for spec in specs]

    async def scenario() -> tuple[int, list[int], list[tuple[int, Any]]]:
        baseline = thread_count()
        requests_sent = [asyncio.ensure_future(raw_post(port, data, {"x-wait-for-model": "true",
                                                                     "Content-Type": "image/png"}))
                         for data, _ in images]
        samples = []
        answered_early = 0
        while not detector.loaded.is_set():  # once loaded, decoding starts its threads
            samples.append(thread_count())
            # No await since the check above: a request done now was answered before the model loaded.
            answered_early += sum(request.done() for request in requests_sent)
            await asyncio.sleep(0.05)
        assert answered_early == 0
        return baseline, samples, await asyncio.gather(*requests_sent)

    started = time.monotonic()
    baseline, samples, answers = asyncio.run(scenario())
    print(f"threads: {baseline} before, at most {max(samples)} while 50 requests waited "
          f"{time.monotonic() - started:.1f} s for the model")
    assert len(samples) > 20, "the requests did wait for the model"
    assert max(samples) <= baseline, "a waiting request holds no thread"
    for (_, spec), (status, answer) in zip(images, answers, strict=True):
        assert (status, answer) == (200, expected_answer(*spec))


@pytest.mark.timeout(120)
def test_an_image_the_model_resizes_to_nothing_is_a_400(tiny_detr_dir: Path) -> None:
    from stream_detect.detect import load_detector

    config = parse_config({"model": {"id": str(tiny_detr_dir), "device": "cpu"}})  # shortest 160, longest 256
    with serving(Pipeline(config, load_detector)) as base:
        wait_healthy(base)
        thin = httpx.post(base, content=png_with_square(5000, 8, 0, 0, 4), timeout=30)
        assert thin.status_code == 400
        assert thin.json()["error"] == ("a 5000x8 image is too narrow for this model: its resize to the model's "
                                        "input is 256x0 pixels")
        tiny = httpx.post(base, content=png_with_square(640, 1, 0, 0, 1), timeout=30)
        assert tiny.status_code == 400
        assert tiny.json()["error"] == "image is 640x1 pixels; each side must be at least 8 pixels"
        assert httpx.post(base, content=png_with_square(2000, 8, 0, 0, 4), timeout=30).status_code == 200


def camera_frame_scaled(factor: int, seed: int) -> tuple[Image.Image, list[GroundTruth]]:
    scene = SyntheticScene(640, 360, seed=seed)
    for _ in range(30):
        scene.step()
    frame, truth = scene.render()
    return Image.fromarray(frame).resize((640 * factor, 360 * factor), Image.BICUBIC), truth


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.timeout(300)
def test_a_large_image_is_answered_in_its_own_pixels_as_if_decoded_in_full() -> None:
    from stream_detect.detect import load_detector
    from stream_detect.images import decode_image

    config = parse_config({"model": {"id": "demo", "device": "cpu"}})
    reference = load_detector(config.model)
    worst = 0.0
    with serving(Pipeline(config, load_detector)) as base:
        wait_healthy(base)
        client = InferenceClient(base_url=base)
        for seed, fmt in ((1, "PNG"), (4, "PNG"), (1, "JPEG"), (3, "JPEG")):
            image, truth = camera_frame_scaled(6, seed)  # 3840x2160, decoded reduced to 768x432 or 960x540
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
            full = reference.detect([decode_image(buffer.getvalue())], 0.3)[0]
            answer = client.object_detection(buffer.getvalue(), threshold=0.3)
            assert len(answer) == len(full), (fmt, seed)
            for found in answer:
                box = (found.box.xmin, found.box.ymin, found.box.xmax, found.box.ymax)
                match = max(range(len(full)), key=lambda i: iou(full.xyxy[i], box))
                assert found.label == full.labels[match]
                assert found.score == pytest.approx(float(full.confidence[match]), abs=0.01)
                worst = max(worst, float(np.abs(np.trunc(full.xyxy[match]) - box).max()))
            in_truth = [max(iou([v * 6 for v in t.box], (a.box.xmin, a.box.ymin, a.box.xmax, a.box.ymax))
                            for t in truth) for a in answer]
            assert sorted(in_truth)[len(in_truth) // 2] > 0.7, "the boxes are on the shapes, in 3840x2160 pixels"
    print(f"boxes of reduced decodes differ from full-size ones by {worst:.1f} px at most")
    assert worst <= 3
