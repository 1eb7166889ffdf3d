"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stream_detect.config import ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import one_camera_pipeline, serving

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
    return Pipeline(config, lambda model: FakeDetector(label="shape"))


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


# A red square on black: what the fake detector finds.
YARD = "lavfi:color=c=black:s=320x240:r=10,drawbox=x=100:y=80:w=60:h=60:color=red:t=fill"


@dataclass
class Managed:
    focused_on_open: str | None  # the id of the element focused when the form opened
    yard_preview_width: int  # the added camera's live preview, decoded
    yard_state: str
    duplicate_error: str  # what the page showed for an id that exists
    kept_after_error: tuple[str, str]  # the form's fields after the refusal
    focused_after_escape: str | None
    after_button_removal: list[str]  # tiles left once "yard" was removed with its button
    after_other_client: list[str]  # tiles left once "entrance" was removed with httpx
    errors: list[str]


def add_and_remove(base: str, token: str | None, screenshot: str | None) -> Managed:
    """Adds "yard" through the form, refuses it a second time, removes it with its button and
    "entrance" as another client would."""
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            # Chromium logs the refused duplicate (409) as a failed load: expected, the rest is not.
            page.on("console", lambda message: errors.append(f"{message.text} {message.location['url']}")
                    if message.type == "error" and "status of 409" not in message.text else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + (f"/?token={token}" if token else "/"))
            page.locator('section.tile[data-stream="entrance"]').wait_for(timeout=10_000)

            opener = page.get_by_role("button", name="Add camera")
            opener.click(timeout=5_000)
            form = page.locator("#add-form")
            form.wait_for(timeout=5_000)
            focused_on_open = page.evaluate("() => document.activeElement?.id ?? null")
            page.get_by_label("Stream id").fill("yard", timeout=5_000)
            page.get_by_label("Source").fill(YARD, timeout=5_000)
            if screenshot:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / screenshot))
            form.get_by_role("button", name="Add").click(timeout=5_000)
            expect(form).to_be_hidden(timeout=15_000)
            yard = page.locator('section.tile[data-stream="yard"]')
            yard.wait_for(timeout=10_000)
            page.wait_for_function(
                """() => document.querySelector('section.tile[data-stream="yard"] img.preview')?.naturalWidth > 0""",
                timeout=15_000)
            yard_preview_width = yard.locator("img.preview").evaluate("image => image.naturalWidth")
            expect(yard.locator(".state")).to_have_text("running", timeout=15_000)
            yard_state = yard.locator(".state").inner_text(timeout=5_000)

            opener.click(timeout=5_000)
            page.get_by_label("Stream id").fill("yard", timeout=5_000)
            page.get_by_label("Source").fill(YARD, timeout=5_000)
            form.get_by_role("button", name="Add").click(timeout=5_000)
            shown = page.locator("#add-error")
            shown.wait_for(timeout=10_000)
            duplicate_error = shown.inner_text(timeout=5_000)
            kept = (page.get_by_label("Stream id").input_value(timeout=5_000),
                    page.get_by_label("Source").input_value(timeout=5_000))
            page.get_by_label("Source").press("Escape", timeout=5_000)
            expect(form).to_be_hidden(timeout=5_000)
            focused_after_escape = page.evaluate("() => document.activeElement?.id ?? null")

            remove = yard.get_by_role("button", name="Remove camera yard")
            remove.click(timeout=5_000)
            expect(yard.locator(".remove")).to_have_text("remove?", timeout=5_000)
            yard.locator(".remove").click(timeout=5_000)
            yard.wait_for(state="detached", timeout=20_000)
            page.wait_for_timeout(2_000)  # a poll, and any late message of the removed stream
            after_button_removal = page.locator("section.tile").evaluate_all(
                "tiles => tiles.map(tile => tile.dataset.stream)")

            gone = httpx.delete(base + "/streams/entrance", headers=headers, timeout=20)
            assert gone.status_code == 204, gone.text
            page.locator('section.tile[data-stream="entrance"]').wait_for(state="detached", timeout=10_000)
            page.wait_for_timeout(2_000)
            after_other_client = page.locator("section.tile").evaluate_all(
                "tiles => tiles.map(tile => tile.dataset.stream)")
        finally:
            browser.close()
    return Managed(focused_on_open, yard_preview_width, yard_state, duplicate_error, kept, focused_after_escape,
                   after_button_removal, after_other_client, list(errors))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("token", [None, "wall-screen-token"], ids=["open", "with-token"])
def test_dashboard_adds_and_removes_cameras(token: str | None) -> None:
    config = ServerConfig(port=0, tokens=[token] if token else [])
    with serving(one_camera_pipeline(), config) as base:
        seen = add_and_remove(base, token, None if token else "dashboard-add-camera.png")
    assert seen.focused_on_open == "add-id"
    assert seen.yard_preview_width == 320 and seen.yard_state.lower() == "running"
    assert "yard" in seen.duplicate_error and "exists" in seen.duplicate_error
    assert seen.kept_after_error == ("yard", YARD), "what the user typed stays after a refusal"
    assert seen.focused_after_escape == "add-open"
    assert seen.after_button_removal == ["entrance"]
    assert seen.after_other_client == []
    assert seen.errors == []
