"""Camera passwords and API tokens never leave a real process, in any encoding."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ..processes import serving_command
from ..rtsp import RtspServer, needs_rtsp
from ..server.serving import ws_url
from .helpers import Listener, wait_until

USER = "user.name"
PASSWORD = "p@ss"
WRONG_PASSWORD = "wr0ng@pass"
TOKEN = "tok-3xample-S3cret"


def encodings(secret: str) -> set[str]:
    """The forms a secret can leak in: raw, percent-encoded, base64, JSON-escaped."""
    forms = {secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1],
             base64.b64encode(secret.encode()).decode().rstrip("=")}
    return {form for form in forms if len(form) >= 4}


def leaks(text: str) -> list[str]:
    found = []
    for secret in (PASSWORD, WRONG_PASSWORD, TOKEN, f"{USER}:{PASSWORD}", f"{USER}:{WRONG_PASSWORD}"):
        found += [f"{secret!r} as {form!r}" for form in encodings(secret) if form in text]
    return found


@needs_rtsp
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_password_or_token_reaches_logs_api_or_websocket(tmp_path: Path) -> None:
    with RtspServer(user=USER, password=PASSWORD) as camera:
        sources = [
            {"kind": "url", "id": "good", "url": camera.url, "open_timeout_s": 3, "read_timeout_s": 3},
            {"kind": "url", "id": "wrong", "url": camera.url_with(USER, WRONG_PASSWORD), "open_timeout_s": 3,
             "read_timeout_s": 3, "reconnect": {"initial_s": 0.5, "max_s": 1}},
            {"kind": "url", "id": "gone", "url": f"http://{quote(USER)}:{quote(PASSWORD, safe='')}@127.0.0.1:9/x",
             "open_timeout_s": 2, "read_timeout_s": 2, "reconnect": {"initial_s": 0.5, "max_s": 1}},
        ]
        assert "%40" in camera.url  # the configured URL carries the password percent-encoded
        config = {"model": {"id": "fake"}, "sources": sources, "server": {"port": 0, "tokens": [TOKEN]}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        seen: list[str] = []
        with serving_command("--log-level", "DEBUG", "run", "--config", str(tmp_path / "config.yaml"),
                             module="tests.faults.fake_run") as served:
            base = served.base
            assert wait_until(lambda: httpx.get(base + "/healthz", timeout=5).status_code == 200, 20)
            # Browsers' token in the query, and a wrong one: both in the server's request log lines.
            with Listener(base, f"token={TOKEN}") as ws:
                assert wait_until(lambda: len(ws.detections("good")) >= 5, 30), "no frames from the camera"
                assert wait_until(lambda: httpx.get(base + "/streams", headers=auth, timeout=5).json()
                                  ["streams"][1]["state"] == "reconnecting", 20)
                time.sleep(3)  # a few failed attempts of the wrong password and the dead host
                seen += [json.dumps(m) for _, m in ws.messages()]
            with pytest.raises(InvalidStatus) as denied:
                connect(ws_url(base, "token=" + TOKEN[:-1] + "x"), open_timeout=10).close()
            seen.append(denied.value.response.body.decode(errors="replace"))
            for path in ("/streams", "/metrics", "/healthz", "/streams/wrong/snapshot.jpg", "/nope",
                         "/streams/good/snapshot.jpg?token=x"):
                response = httpx.get(base + path, headers=auth, timeout=5)
                seen.append(path + " " + str(response.headers) + response.text[:100_000])
            seen.append(httpx.get(base + "/streams?token=" + TOKEN, timeout=5).text)
            seen.append(httpx.post(base + "/models/none", content=b"x", headers=auth, timeout=5).text)
            seen.append(httpx.post(base + "/", content=b"\x89PNG broken", headers=auth, timeout=5).text)
            described = streams_with(base, auth)
        stderr = served.stderr
    assert described["good"]["state"] == "running"
    wrong = described["wrong"]
    assert wrong["state"] == "reconnecting" and "unauthorized" in (wrong["detail"] or "").lower(), wrong
    print(f"wrong password: {wrong['detail']}; dead host: {described['gone']['detail']}")
    assert "127.0.0.1" in stderr and "WebSocket" in stderr, "the request log lines were not written"
    assert "***" in stderr, "nothing was redacted: the test did not exercise the URLs"
    assert "libav.rtsp" in stderr, "FFmpeg's own log lines were not captured"
    everything = "\n".join([stderr, *seen])
    found = leaks(everything)
    assert not found, f"secrets leaked: {found}"


def streams_with(base: str, headers: dict[str, str]) -> dict[str, dict]:
    response = httpx.get(base + "/streams", headers=headers, timeout=10)
    return {s["id"]: s for s in response.json()["streams"]}


QUERY_SECRETS = ("S3cret-pwd-value", "S3cret-apikey-value")
AT_PASSWORD = ("before-at-PW", "after-at-PW")  # the password "before-at-PW@after-at-PW", '@' unencoded


class _Unauthorized(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="cam"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the served process's log, not its own."""


@contextlib.contextmanager
def unauthorized_camera() -> Iterator[int]:
    """An HTTP server answering every request 401; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, name="test-401-camera")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_query_secrets_and_passwords_with_at_never_leave_the_process(tmp_path: Path) -> None:
    query = f"user=viewer&pwd={QUERY_SECRETS[0]}&apikey={QUERY_SECRETS[1]}"
    retry = {"open_timeout_s": 2, "read_timeout_s": 2, "reconnect": {"initial_s": 0.5, "max_s": 1}}
    with unauthorized_camera() as port:
        sources = [
            {"kind": "url", "id": "dead", "url": f"http://127.0.0.1:9/401?{query}", **retry},
            {"kind": "url", "id": "denied", "url": f"http://127.0.0.1:{port}/401?{query}", **retry},
            {"kind": "url", "id": "at", "url": f"rtsp://admin:{'@'.join(AT_PASSWORD)}@127.0.0.1:9/x", **retry},
        ]
        config = {"model": {"id": "fake"}, "sources": sources, "server": {"port": 0}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        command = ("--log-level", "DEBUG", "run", "--config", str(tmp_path / "config.yaml"))
        with serving_command(*command, module="tests.faults.fake_run") as served, Listener(served.base) as ws:
            def all_retrying() -> bool:
                described = streams_with(served.base, {})
                return all(described[s["id"]]["state"] == "reconnecting" for s in sources)

            assert wait_until(all_retrying, 30), streams_with(served.base, {})
            time.sleep(2)  # a few more failed attempts, each logged and announced
            described = streams_with(served.base, {})
            statuses = [m for _, m in ws.messages() if m["type"] == "status" and m.get("detail")]
        stderr = served.stderr
    details = {stream_id: stream["detail"] or "" for stream_id, stream in described.items()}
    print(details)
    # The URLs are shown, with the user name of the query and the secrets' places kept.
    assert "user=viewer&pwd=***&apikey=***" in details["dead"], details
    assert "401" in details["denied"] and "user=viewer&pwd=***&apikey=***" in details["denied"], details
    assert "rtsp://***@127.0.0.1:9/x" in details["at"], details
    assert {m["stream"] for m in statuses} == {"dead", "denied", "at"}, statuses
    assert "pwd=***" in stderr and "rtsp://***@127.0.0.1:9/x" in stderr
    everything = "\n".join([stderr, json.dumps(described), *map(json.dumps, statuses)])
    found = [f"{secret!r} as {form!r}" for secret in (*QUERY_SECRETS, *AT_PASSWORD)
             for form in encodings(secret) if form in everything]
    assert not found, f"secrets leaked: {found}"
