"""The dashboard document, its Content Security Policy over HTTP, and the parts of a stream's tile (the browser
side: test_dashboard_browser and test_dashboard_events_browser)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

import stream_detect
from stream_detect.config import ServerConfig
from stream_detect.server.dashboard import dashboard_page
from stream_detect.server.hub import MESSAGE_TYPES

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
    host = base.removeprefix("http://")
    # Its own script, and the packaged hls.js by its exact path (loaded when a stream has HLS).
    player = "/static/hls.light.min.js"
    assert policy["script-src"] == [sha256_source(script), f"http://{host}{player}", f"https://{host}{player}"]
    assert policy["style-src"] == [sha256_source(style)]
    assert policy["img-src"] == ["'self'", "data:"]  # the MJPEG previews and the page's icon
    assert policy["media-src"] == ["'self'", "blob:"]  # clips; live H.264 through Media Source Extensions
    assert policy["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    # A Host header that is not a host name adds nothing to the policy.
    assert directives(hostile.headers["content-security-policy"])["connect-src"] == ["'self'"]
    assert directives(hostile.headers["content-security-policy"])["script-src"] == [sha256_source(script)]
    assert "script-src *" not in hostile.headers["content-security-policy"]


class Elements(HTMLParser):
    """The page's elements as (tag, attributes, the classes of the elements around it), and each
    ``select``'s option values by the select's class."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[set[str]]]] = []
        self.options: dict[str, list[str]] = {}
        self._open: list[tuple[str, set[str]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = set(attributes.get("class", "").split())
        self.found.append((tag, attributes, [around for _, around in self._open]))
        if tag == "option" and self._open and self._open[-1][0] == "select":
            select = min(self._open[-1][1])
            self.options.setdefault(select, []).append(attributes.get("value", ""))
        if tag not in VOID:
            self._open.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def one(self, tag: str, css_class: str) -> tuple[dict[str, str], list[set[str]]]:
        (match,) = [(attributes, around) for name, attributes, around in self.found
                    if name == tag and css_class in attributes.get("class", "").split()]
        return match


VOID = {"meta", "link", "input", "img", "br", "hr", "source"}
SCHEMA = Path(stream_detect.__file__).parent / "schema" / "messages.schema.json"


def test_a_tile_has_counts_names_over_the_video_and_an_event_list_of_the_schemas_kinds() -> None:
    page, _ = dashboard_page()
    (template,) = re.findall(r'<template id="tile">(.*?)</template>', page, re.S)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    elements = Elements(template)
    kinds = json.loads(SCHEMA.read_text())["$defs"]["event"]["properties"]["kind"]["enum"]

    layer, around = elements.one("div", "overlay-layer")
    assert layer["aria-hidden"] == "true" and {"video"} in around, "over the picture, not read out twice"
    counts, _ = elements.one("section", "counts")
    assert "hidden" in counts, "shown for streams with zones or lines only"
    assert {"counts"} in elements.one("ul", "count-list")[1]
    toggle, around = elements.one("input", "overlay-toggle")
    assert toggle["type"] == "checkbox" and "checked" in toggle and {"counts"} in around
    events, _ = elements.one("section", "events")
    assert "hidden" in events, "shown for tracked streams only"
    assert {"events"} in elements.one("ol", "event-list")[1]
    assert elements.options["kind-filter"] == ["", *kinds]
    assert elements.options["event-label-filter"] == [""], "labels are added as they are seen"
    assert elements.options["label-filter"] == [""]

    # The script knows the same kinds, and asks the websocket for the types the server sends.
    (known,) = re.findall(r"const KINDS = new Set\((\[.*?\])\);", script)
    assert json.loads(known) == kinds
    (asked,) = re.findall(r'const types = "([a-z,]+)";', script)
    assert sorted(asked.split(",")) == sorted(MESSAGE_TYPES)
