"""The dashboard document and its Content Security Policy, over HTTP (the browser side: test_dashboard_browser)."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from stream_detect.config import ServerConfig

from .serving import one_camera_pipeline, serving


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = [part.split() for part in policy.split(";") if part.strip()]
    return {name: values for name, *values in parsed}


@pytest.mark.timeout(60)
def test_policy_allows_exactly_the_pages_own_script_and_style() -> None:
    hostile_host = {"Host": "evil.example; script-src *"}
    with serving(one_camera_pipeline()) as base:
        response = httpx.get(base + "/", timeout=5)
        refused = httpx.get(base + "/", headers=hostile_host, timeout=5)
    # A server that answers any Host (allowed_hosts: ['*']) still keeps a hostile one out of the policy.
    with serving(one_camera_pipeline(), ServerConfig(port=0, allowed_hosts=["*"])) as any_host:
        hostile = httpx.get(any_host + "/", headers=hostile_host, timeout=5)
    assert refused.status_code == 400 and "content-security-policy" not in refused.headers
    assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"
    (script,) = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", response.text, re.S)
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [sha256_source(script)]
    assert policy["style-src"] == [sha256_source(style)]
    assert policy["img-src"] == ["'self'", "data:"]  # the MJPEG previews and the page's icon
    host = base.removeprefix("http://")
    assert policy["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    # A Host header that is not a host name adds nothing to the policy.
    assert directives(hostile.headers["content-security-policy"])["connect-src"] == ["'self'"]
    assert "script-src *" not in hostile.headers["content-security-policy"]
