"""The dashboard plays a stream's H.264 (HLS through the packaged hls.js) in Debian's Chromium, and MJPEG
for a stream without HLS; with tokens on, under the page's Content Security Policy."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from stream_detect.config import ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "dashboard-h264-token"

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
              pytest.mark.timeout(120)]


def pipeline() -> Pipeline:
    config = parse_config({
        "model": {"id": "fake"},
        "sources": [{"id": "porch", "graph": "testsrc2=size=640x360:rate=15", "restream": {"hls": True}},
                    {"kind": "synthetic", "id": "yard", "fps": 10, "width": 320, "height": 240}],
    })
    return Pipeline(config, lambda model: FakeDetector(label="pattern"))


def test_a_stream_with_hls_plays_as_h264_and_one_without_as_mjpeg() -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with serving(pipeline(), ServerConfig(port=0, tokens=[TOKEN])) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/?token={TOKEN}")
            porch = page.locator('section.tile[data-stream="porch"]')
            porch.wait_for(timeout=10_000)
            page.locator('section.tile[data-stream="porch"][data-view="h264"]').wait_for(timeout=30_000)
            video = porch.locator("video.preview-video")
            state = video.evaluate("v => ({ready: v.readyState, time: v.currentTime, width: v.videoWidth})")
            time.sleep(2.0)
            later = video.evaluate("v => ({ready: v.readyState, time: v.currentTime, paused: v.paused})")
            pill = porch.locator(".pill.view").text_content()
            mjpeg_hidden = porch.locator("img.preview").evaluate("i => i.hidden && !i.getAttribute('src')")
            yard = page.locator('section.tile[data-stream="yard"]')
            yard_view = yard.get_attribute("data-view")
            yard_image = yard.locator("img.preview").evaluate(
                "i => ({src: i.getAttribute('src'), width: i.naturalWidth})")
        finally:
            browser.close()
    assert state["ready"] >= 2 and later["ready"] >= 2, (state, later)
    assert state["width"] == 640
    assert later["time"] > state["time"] + 1.0 and not later["paused"], (state, later)
    assert pill == "H.264" and mjpeg_hidden, "the MJPEG request ends once the video plays"
    assert yard_view in (None, "mjpeg") and "/streams/yard/mjpeg" in yard_image["src"] and yard_image["width"] == 320
    assert not errors, errors


def test_a_player_that_fails_falls_back_to_mjpeg() -> None:
    from playwright.sync_api import sync_playwright

    with serving(pipeline()) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.route("**/hls/index.m3u8*", lambda route: route.abort())  # the playlist never arrives
            page.goto(base + "/")
            porch = page.locator('section.tile[data-stream="porch"]')
            porch.wait_for(timeout=10_000)
            pill = porch.locator(".pill.view")
            deadline = time.monotonic() + 30
            while "failed" not in (pill.get_attribute("title") or ""):
                assert time.monotonic() < deadline, "the failed player was not noticed within 30 s"
                time.sleep(0.2)
            time.sleep(1.0)
            shown = porch.locator("img.preview").evaluate(
                "i => ({hidden: i.hidden, src: i.getAttribute('src'), width: i.naturalWidth})")
            video_hidden = porch.locator("video.preview-video").evaluate("v => v.hidden")
            view, text = porch.get_attribute("data-view"), pill.text_content()
        finally:
            browser.close()
    assert view == "mjpeg" and text == "MJPEG" and video_hidden
    assert not shown["hidden"] and "/streams/porch/mjpeg" in shown["src"] and shown["width"] == 640, shown
