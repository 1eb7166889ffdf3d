"""``GET /``: the live dashboard.

The page's HTML, CSS and JavaScript ship inside the package (no build step,
no CDN: it works offline) and are served as one document, so the page is one
endpoint like any other: when tokens are configured it is opened as
``/?token=...`` and the script passes that token on to the API, the websocket
and the MJPEG streams.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).resolve().parent.parent / "static"


@cache
def dashboard_html() -> str:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    return html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", script)


def install_dashboard(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(dashboard_html(), headers={"Cache-Control": "no-cache"})
