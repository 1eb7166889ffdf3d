"""HTTP clients that send too much, too slowly, the wrong thing, or garbage.

The inference API's own fuzz test (JSON and image bodies, 1,200 cases) is
``tests/server/test_inference_fuzz.py``; here raw requests hit the server
below the application too.
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stream_detect.config import ServerConfig

from .helpers import analyzer

MAX_BODY = 64 * 1024
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    config = ServerConfig(port=0, max_body_bytes=MAX_BODY, max_image_pixels=MAX_PIXELS, body_timeout_s=2,
                          header_timeout_s=5)
    with analyzer([], config) as url:
        yield url


def raw_request(base: str, head: bytes, body_chunks: list[bytes] | tuple[bytes, ...] = (), pause_s: float = 0.0,
                timeout_s: float = 10, first_wait_s: float = 0.0) -> tuple[bytes, float, int]:
    """Sends ``head``, waits up to ``first_wait_s`` for an early answer, then the chunks
    (``pause_s`` apart, stopping once an answer arrives); returns (the answer, seconds
    until it arrived, body bytes sent)."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(head)
        sent = 0
        select.select([sock], [], [], first_wait_s)  # a client expecting 100-continue waits this long
        sock.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BlockingIOError, OSError):
                break
            sent += len(chunk)
            time.sleep(pause_s)
        sock.setblocking(True)
        sock.settimeout(timeout_s)
        answered = time.monotonic() - started if answer else None
        while not _complete(answer) and time.monotonic() - started < timeout_s:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
            answered = answered or time.monotonic() - started
        return answer, answered if answered is not None else time.monotonic() - started, sent


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.timeout(30)
def test_body_over_the_limit_is_refused_before_it_is_read(base: str) -> None:
    head = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 500000000\r\n\r\n")
    answer, took, sent = raw_request(base, head, [b"x" * 1024] * 3, pause_s=0.5, first_wait_s=2.0)
    assert status_of(answer) == 413 and b"larger than the limit" in answer
    assert sent == 0 and took < 2.0, (sent, took)  # answered from the headers alone
    # Without a Content-Length (chunked), reading stops at the limit.
    chunked = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    answer, _, sent = raw_request(base, chunked, [piece] * 2000)
    assert status_of(answer) == 413
    print(f"chunked body refused after {sent} bytes sent")


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR claiming ``width`` x ``height`` and a tiny, truncated IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.timeout(60)
def test_image_formats_and_pixel_limit(base: str) -> None:
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"):
        response = httpx.post(base + "/", content=encoded(fmt), timeout=30)
        assert response.status_code == 200, (fmt, response.text)
    for fmt in ("PPM", "ICO", "TGA", "PCX"):
        response = httpx.post(base + "/", content=encoded(fmt), timeout=30)
        assert response.status_code == 415, (fmt, response.text)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    assert httpx.post(base + "/", content=svg, timeout=30).status_code == 415
    # A header claiming 2.5 gigapixels: refused from the header (decoding would fail as truncated).
    bomb = png_header_claiming(50_000, 50_000)
    started = time.monotonic()
    response = httpx.post(base + "/", content=bomb, timeout=30)
    took = time.monotonic() - started
    assert response.status_code == 413 and "pixel limit" in response.json()["error"], response.text
    assert took < 2.0
    # A real compression bomb: 4 Mpx of zeros in a few kilobytes.
    real = encoded("PNG", (2000, 2000))
    assert len(real) < MAX_BODY
    assert httpx.post(base + "/", content=real, timeout=30).status_code == 413


@pytest.mark.timeout(30)
def test_a_slow_body_is_cut_off_by_the_body_timeout(base: str) -> None:
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    answer, took, sent = raw_request(base, head, [b"x"] * 40, pause_s=0.25)
    print(f"slow body answered {status_of(answer)} after {took:.2f} s and {sent} bytes")
    assert status_of(answer) == 408 and b"did not arrive" in answer
    assert 1.5 <= took <= 4.0


methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"BREW", b""])
paths = st.sampled_from([b"/", b"/models/fake", b"/streams", b"/metrics", b"/healthz", b"/ws", b"/streams/x/mjpeg",
                         b"/streams/x/snapshot.jpg", b"/%00", b"/../etc/passwd", b"*", b"/" + b"a" * 5000])
header_names = st.sampled_from([b"Content-Type", b"Content-Length", b"Transfer-Encoding", b"Upgrade", b"Connection",
                                b"Authorization", b"Origin", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"X-"])
header_values = st.one_of(st.binary(max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v),
                          st.sampled_from([b"websocket", b"Upgrade", b"chunked", b"-1", b"99999999999999999999",
                                           b"application/json", b"13", b"Bearer x"]))
requests = st.builds(
    lambda method, path, headers, body, version: (
        method + b" " + path + b" " + version + b"\r\nHost: 127.0.0.1\r\n"
        + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body),
    methods, paths, st.lists(st.tuples(header_names, header_values), max_size=6), st.binary(max_size=200),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 extra", b""]),
)


@pytest.mark.timeout(300)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(request=requests)
def test_raw_request_fuzz_never_answers_5xx(base: str, request: bytes) -> None:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"\r\n" not in answer:
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    status = status_of(answer)
    assert status < 500, answer[:300]
