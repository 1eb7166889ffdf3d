"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
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


@dataclass
class Watched:
    changes: int  # image changes seen in 20 s
    rows: list[str]  # the first tile's detection rows
    errors: list[str]  # console errors and uncaught exceptions: a refused script or style shows here
    injected: object  # what a script added to the page at run time could do: nothing, under the policy


def watch(base: str, path: str, screenshot: str) -> Watched:
    """Opens the page, watches the first tile and saves a screenshot."""
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.on("console", lambda message: errors.append(f"{message.text} {message.location['url']}")
                    if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
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
            console_errors = list(errors)
            injected = page.evaluate("""() => {
                const script = document.createElement("script");
                script.textContent = "window.injected = 'ran'";
                document.body.append(script);
                return window.injected ?? null;
            }""")
        finally:
            browser.close()
    return Watched(changes, rows, console_errors, injected)


@pytest.mark.timeout(120)
def test_dashboard_shows_live_video_and_detections() -> None:
    with serving(pipeline()) as base:
        seen = watch(base, "/", "dashboard.png")
    assert seen.changes >= 3, "the tile's image did not change three times within 20 s"
    assert seen.rows and seen.rows[0].startswith("shape 0.")
    assert seen.errors == [], "the page's own script and style run under its security policy"
    assert seen.injected is None, "a script injected at run time must not run"


@pytest.mark.timeout(120)
def test_dashboard_works_with_a_token() -> None:
    with serving(pipeline(), ServerConfig(port=0, tokens=["wall-screen-token"])) as base:
        seen = watch(base, "/?token=wall-screen-token", "dashboard-token.png")
    assert seen.changes >= 3 and seen.rows and seen.rows[0].startswith("shape")
    assert seen.errors == []
