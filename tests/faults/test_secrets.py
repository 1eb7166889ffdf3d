"""Camera passwords and API tokens never leave a real process, in any encoding."""

from __future__ import annotations

import base64
import json
import time
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

