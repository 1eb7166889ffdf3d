"""Thousands of malformed requests: never a 5xx, always a JSON error."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stream_detect.config import ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import serving


def _png(width: int = 24, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
images = st.one_of(
    st.binary(max_size=300),
    st.just(PNG),
    st.integers(0, len(PNG)).map(lambda n: PNG[:n]),
    st.binary(min_size=1, max_size=40).map(lambda junk: PNG[:30] + junk + PNG[30:]),
    st.sampled_from([b"GIF89a", b"\xff\xd8\xff\xe0", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II*\x00"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
parameters = st.one_of(json_values, st.fixed_dictionaries({"threshold": json_values}))
json_bodies = st.one_of(
    st.builds(lambda data, p: {"inputs": base64.b64encode(data).decode(), "parameters": p}, images, parameters),
    st.builds(lambda data: {"inputs": "data:image/png;base64," + base64.b64encode(data).decode()}, images),
    st.builds(lambda inputs, p: {"inputs": inputs, "parameters": p}, json_values, parameters),
    json_values,
).map(lambda body: json.dumps(body).encode())
bodies = st.one_of(images, json_bodies, st.text(max_size=100).map(str.encode))
headers = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "image/png", "text/plain", "multipart/form-data", "", "x"]),
    "x-use-cache": st.sampled_from(["true", "false", "0", "1", "maybe", ""]),
    "x-wait-for-model": st.sampled_from(["true", "false", "yes", "nope"]),
    "authorization": st.sampled_from(["Bearer nope", "Basic abc", "Bearer", ""]),
})
paths = st.sampled_from(["/", "/models/fake", "/models/unknown/model", "/models/fake/extra", "/models/"])


@pytest.fixture(scope="module")
def base() -> object:
    config = parse_config({"model": {"id": "fake", "max_batch_wait_ms": 1}})
    with serving(Pipeline(config, lambda model: FakeDetector()), ServerConfig(port=0, max_body_bytes=4096,
                                                                         max_image_pixels=10_000)) as url:
        yield url


@pytest.mark.timeout(600)
@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(path=paths, body=bodies, request_headers=headers)
def test_malformed_requests_never_answer_5xx(base: str, path: str, body: bytes, request_headers: dict) -> None:
    response = httpx.post(base + path, content=body, headers=request_headers, timeout=30)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert "error" in response.json()
    else:
        assert isinstance(response.json(), list)
