"""The websocket as a client sees it, against the real server and real sources."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from websockets.exceptions import InvalidStatus

from stream_detect.config import Config, ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import open_ws, read_messages, serving

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "stream_detect" / "schema" / "messages.schema.json").read_text()
)


def synthetic(stream_id: str, fps: float = 25.0, width: int = 320, height: int = 240) -> dict:
    return {"kind": "synthetic", "id": stream_id, "fps": fps, "width": width, "height": height}


def pipeline_for(*sources: dict, delay_s: float = 0.0, boxes: int = 1) -> Pipeline:
    config: Config = parse_config({"sources": list(sources), "model": {"id": "fake"}})
    return Pipeline(config, lambda model: FakeDetector(delay_s=delay_s, boxes=boxes))


def detections_of(messages: list[dict], stream: str | None = None) -> list[dict]:
    return [m for m in messages if m["type"] == "detections" and (stream is None or m["stream"] == stream)]


@pytest.mark.timeout(60)
def test_messages_follow_the_schema_one_per_processed_frame() -> None:
    pipeline = pipeline_for(synthetic("cam1"))
    with serving(pipeline) as base, open_ws(base) as ws:
        messages = read_messages(ws, until=lambda m: len(detections_of(m)) >= 30, timeout_s=30)
        streams = httpx.get(f"{base}/streams", timeout=5).json()["streams"]
    for message in messages:
        jsonschema.validate(message, SCHEMA)
    assert messages[0]["type"] == "status" and messages[0]["stream"] == "cam1"
    frames = [m["frame"] for m in detections_of(messages)]
    assert len(frames) >= 30
    assert frames == sorted(set(frames)), "frame numbers must increase, one message per frame"
    assert {(m["width"], m["height"]) for m in detections_of(messages)} == {(320, 240)}
    assert all(m["detections"] for m in detections_of(messages))
    assert streams[0]["id"] == "cam1" and streams[0]["frames_processed"] >= 30


@pytest.mark.timeout(60)
def test_streams_filter_and_status_of_a_dead_source() -> None:
    dead = {"kind": "url", "id": "dead", "url": "rtsp://127.0.0.1:9/none", "open_timeout_s": 1,
            "read_timeout_s": 1, "reconnect": {"initial_s": 0.5, "max_s": 1}}
    pipeline = pipeline_for(synthetic("live"), dead)
    with serving(pipeline) as base:
        with open_ws(base, "streams=dead") as only_dead:
            dead_messages = read_messages(
                only_dead, until=lambda m: any(x.get("state") == "reconnecting" for x in m), timeout_s=20
            )
        with open_ws(base, "streams=live") as only_live:
            live_messages = read_messages(only_live, until=lambda m: len(detections_of(m)) >= 20, timeout_s=20)
        streams = {s["id"]: s for s in httpx.get(f"{base}/streams", timeout=5).json()["streams"]}
        health = httpx.get(f"{base}/healthz", timeout=5)
    assert {m["stream"] for m in dead_messages} == {"dead"}
    assert any(m["type"] == "status" and m["state"] == "reconnecting" for m in dead_messages)
    assert {m["stream"] for m in live_messages} == {"live"}
    assert len(detections_of(live_messages, "live")) >= 20
    assert streams["dead"]["state"] == "reconnecting"
    assert streams["live"]["state"] == "running"
    assert health.status_code == 200


@pytest.mark.timeout(60)
def test_tokens_guard_every_endpoint_but_healthz() -> None:
    pipeline = pipeline_for(synthetic("cam1", fps=10))
    with serving(pipeline, ServerConfig(port=0, tokens=["s3cret-token"])) as base:
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        denied = httpx.get(f"{base}/streams", timeout=5)
        assert denied.status_code == 401 and "error" in denied.json()
        wrong = httpx.get(f"{base}/streams", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = httpx.get(f"{base}/streams", headers={"Authorization": "Bearer s3cret-token"}, timeout=5)
        assert ok.status_code == 200
        with pytest.raises(InvalidStatus) as refused:
            open_ws(base)
        assert refused.value.response.status_code == 401
        with open_ws(base, additional_headers={"Authorization": "Bearer s3cret-token"}) as ws:
            assert read_messages(ws, until=lambda m: len(m) >= 2, timeout_s=10)
        with open_ws(base, subprotocols=["stream-detect.v1", "bearer.s3cret-token"]) as ws:
            assert ws.subprotocol == "stream-detect.v1"
            assert read_messages(ws, until=lambda m: len(m) >= 2, timeout_s=10)


class _closed_with:
    """Expects the server to refuse or close the websocket with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> bool:
        from websockets.exceptions import ConnectionClosed

        if isinstance(error, ConnectionClosed):
            assert error.rcvd is not None and error.rcvd.code == self.code
            return True
        if isinstance(error, InvalidStatus):
            assert error.response.status_code == 403
            return True
        raise AssertionError(f"expected the websocket to be refused with {self.code}, got {error!r}")


def _stalled_client(base: str) -> socket.socket:
    """A peer that completes the websocket handshake and then never reads."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.settimeout(5)
    assert b" 101 " in sock.recv(1024)
    return sock


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(90)
def test_a_client_that_never_reads_does_not_delay_others() -> None:
    pipeline = pipeline_for(synthetic("a", fps=30), synthetic("b", fps=30), boxes=40)
    with serving(pipeline, ServerConfig(port=0, client_queue_size=4, send_timeout_s=2)) as base:
        stalled = [_stalled_client(base) for _ in range(3)]
        try:
            with open_ws(base) as fast:
                read_messages(fast, until=lambda m: len(m) >= 20, timeout_s=10)  # warm up
                rss_before = _rss_bytes()
                delays: list[float] = []
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and len(delays) < 100_000:
                    message = json.loads(fast.recv(timeout=5))
                    if message["type"] == "detections":
                        delays.append(time.time() - message["emitted_at"])
                rss_after = _rss_bytes()
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
        finally:
            for sock in stalled:
                sock.close()
    delays.sort()
    assert len(delays) > 200
    p99 = delays[int(len(delays) * 0.99)]
    assert p99 < 0.050, f"fast client's p99 delay was {p99 * 1000:.1f} ms"
    assert rss_after - rss_before < 30 * 2**20
    evicted = [line for line in metrics.splitlines() if line.startswith("stream_detect_ws_clients_evicted_total")]
    assert evicted and float(evicted[0].split()[-1]) >= 1, "stalled clients were never evicted"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_live_source_with_slow_detector_keeps_frames_fresh() -> None:
    pipeline = pipeline_for(synthetic("cam", fps=25), delay_s=0.2)
    with serving(pipeline) as base, open_ws(base) as ws:
        read_messages(ws, until=lambda m: len(detections_of(m)) >= 3, timeout_s=20)  # model ready
        started = time.monotonic()
        messages = read_messages(ws, until=lambda m: time.monotonic() - started > 30, timeout_s=35)
        stream = httpx.get(f"{base}/streams", timeout=5).json()["streams"][0]
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    ages = [m["emitted_at"] - m["captured_at"] for m in detections_of(messages)]
    assert len(ages) > 100  # ~5 per second over 30 s
    assert max(ages) < 0.5, f"frame age reached {max(ages):.3f} s"
    assert stream["frames_dropped"] > 100
    assert 'stream_detect_frames_dropped_total{stream="cam"}' in metrics
