"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def pipeline() -> Pipeline:
    config = parse_config({
        "model": {"id": "fake"},
        "sources": [{"kind": "synthetic", "id": "entrance", "fps": 15, "width": 640, "height": 360},
                    {"kind": "synthetic", "id": "parking", "fps": 10, "width": 480, "height": 360, "seed": 4}],
    })
    return Pipeline(config, lambda: FakeDetector(label="shape"))


def watch(base: str, path: str, screenshot: str) -> tuple[int, list[str]]:
    """Opens the page; returns (image changes seen in 20 s, detection rows) and saves a screenshot."""
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.goto(base + path)
            tile = page.locator('section.tile[data-stream="entrance"]')
            tile.wait_for(timeout=10_000)
            image = tile.locator("img.preview")
            changes, previous = 0, b""
            while time.monotonic() - started < 20 and changes < 3:
                shot = image.screenshot(timeout=5_000)
                if previous and shot != previous:
                    changes += 1
                previous = shot
                page.wait_for_timeout(400)
            page.locator(".detections li:not(.none)").first.wait_for(timeout=10_000)
            rows = tile.locator(".detections li").all_inner_texts()
            page.wait_for_timeout(1500)  # let the stats poll fill the tiles
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        finally:
            browser.close()
    return changes, rows


@pytest.mark.timeout(120)
def test_dashboard_shows_live_video_and_detections() -> None:
    with serving(pipeline()) as base:
        changes, rows = watch(base, "/", "dashboard.png")
    assert changes >= 3, "the tile's image did not change three times within 20 s"
    assert rows and rows[0].startswith("shape 0.")


@pytest.mark.timeout(120)
def test_dashboard_works_with_a_token() -> None:
    with serving(pipeline(), ServerConfig(port=0, tokens=["wall-screen-token"])) as base:
        changes, rows = watch(base, "/?token=wall-screen-token", "dashboard-token.png")
    assert changes >= 3 and rows and rows[0].startswith("shape")
