"""``/docs`` and ``/redoc`` work offline: their assets come from this server, in a real browser too."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from stream_detect.config import ServerConfig

from .serving import one_camera_pipeline, serving
from .test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM

TOKEN = "docs-reader-token"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def referenced_urls(html: str) -> list[str]:
    """The URLs a docs page loads: its ``src`` and ``href`` attributes and the OpenAPI document."""
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(r'url: "([^"]+)"', html)


def extension(url: str) -> str:
    return Path(urlsplit(url).path).suffix


@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_loads_its_assets_from_this_server(page: str) -> None:
    with serving(one_camera_pipeline()) as base:
        response = httpx.get(base + page, timeout=5)
        assert response.status_code == 200
        html = response.text
        assert not re.search(r"https?://", html), "the page refers to another host"
        urls = referenced_urls(html)
        assert {extension(url) for url in urls} >= {".js", ".png", ".json"}
        for url in urls:
            asset = httpx.get(urljoin(base, url), timeout=5)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(CONTENT_TYPES[extension(url)]), url


@pytest.mark.timeout(60)
def test_docs_need_the_token_and_pass_it_on() -> None:
    with serving(one_camera_pipeline(), ServerConfig(port=0, tokens=[TOKEN])) as base:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
            assert httpx.get(base + path, timeout=5).status_code == 401, path
        html = httpx.get(f"{base}/docs?token={TOKEN}", timeout=5).text
        urls = referenced_urls(html)
        assert urls and all(url.endswith(f"?token={TOKEN}") for url in urls)
        assert all(httpx.get(urljoin(base, url), timeout=5).status_code == 200 for url in urls)


@pytest.mark.timeout(60)
def test_api_description_declares_the_token_when_there_are_tokens() -> None:
    with serving(one_camera_pipeline()) as base:
        assert "securitySchemes" not in httpx.get(base + "/openapi.json", timeout=5).json().get("components", {})
    with serving(one_camera_pipeline(), ServerConfig(port=0, tokens=[TOKEN])) as base:
        spec = httpx.get(base + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    scheme = spec["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerToken": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []  # open without a token
    assert "security" not in spec["paths"]["/streams"]["get"]  # the document-wide rule applies


def open_offline(base: str, path: str, screenshot: str, ready: str) -> tuple[str, list[str], list[str]]:
    """Opens ``path`` with every request to another host aborted; returns (text of ``ready``, paths, blocked)."""
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.route("**/*", local_only)
            page.goto(base + path)
            title = page.locator(ready)
            title.wait_for(timeout=15_000)
            paths = page.locator(".opblock-summary-path").evaluate_all("spans => spans.map(s => s.dataset.path)")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
            return title.inner_text(), paths, blocked
        finally:
            browser.close()


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.parametrize("tokens", [[], [TOKEN]], ids=["open", "token"])
def test_swagger_ui_renders_without_internet(tokens: list[str]) -> None:
    path = f"/docs?token={TOKEN}" if tokens else "/docs"
    with serving(one_camera_pipeline(), ServerConfig(port=0, tokens=tokens)) as base:
        title, paths, blocked = open_offline(base, path, f"docs-{len(tokens)}.png", ".swagger-ui .info .title")
    assert "stream-detect" in title
    assert "/streams" in paths and "/models/{model_id}" in paths
    assert blocked == [], "Swagger UI asked another host for something"


@needs_chromium
@pytest.mark.timeout(120)
def test_redoc_renders_without_internet() -> None:
    with serving(one_camera_pipeline()) as base:
        title, _, blocked = open_offline(base, "/redoc", "redoc.png", ".api-info h1")
    assert title.startswith("stream-detect")
    # ReDoc's footer would fetch its maker's logo: the page's policy keeps the browser from asking.
    assert blocked == [], "ReDoc asked another host for something"


@needs_chromium
@pytest.mark.timeout(120)
def test_swagger_try_it_out_sends_the_token_the_page_was_opened_with() -> None:
    from playwright.sync_api import sync_playwright

    with serving(one_camera_pipeline(), ServerConfig(port=0, tokens=[TOKEN])) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{base}/docs?token={TOKEN}")
            page.locator("#operations-streams-streams_streams_get .opblock-summary").click(timeout=15_000)
            page.locator("#operations-streams-streams_streams_get .try-out__btn").click(timeout=5_000)
            with page.expect_response(lambda response: response.url == base + "/streams", timeout=10_000) as sent:
                page.locator("#operations-streams-streams_streams_get .execute").click(timeout=5_000)
            response = sent.value
            headers = response.request.all_headers()
            status = response.status
        finally:
            browser.close()
    assert headers.get("authorization") == f"Bearer {TOKEN}"
    assert status == 200
