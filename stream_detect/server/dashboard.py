"""``GET /``: the live dashboard.

The page's HTML, CSS and JavaScript ship inside the package (no build step,
no CDN: it works offline) and are served as one document, so the page is one
endpoint like any other: when tokens are configured it is opened as
``/?token=...`` and the script passes that token on to the API, the websocket
and the MJPEG streams.

The page is served with a Content Security Policy that runs exactly its own
script and style (by their SHA-256) and lets it reach only this server: a
stream name or label that smuggles markup into the page cannot run code or
send anything elsewhere. The one other script it may run is the hls.js
player the package ships (:data:`HLS_JS`, named by its exact path), loaded
by the page only when a stream has HLS; its media comes from ``blob:`` URLs
(Media Source Extensions).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

STATIC = Path(__file__).resolve().parent.parent / "static"
HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")
HLS_JS = "/static/hls.light.min.js"  # the H.264 player: hls.js's light build (static/hls.js.README.md)


@cache
def dashboard_page() -> tuple[str, str]:
    """The page, and the script and style sources of its Content Security Policy."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    page = html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", script)
    return page, f"script-src {_digest(script)}; style-src {_digest(css)}"


def _digest(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def content_security_policy(inline: str, host: str) -> str:
    """Nothing but the page's own script and style, and hls.js by its path; images (and the inline icon),
    events' clips, live video (``blob:``: Media Source Extensions), API and websocket from this server only."""
    connect = f"connect-src 'self' ws://{host} wss://{host}" if host else "connect-src 'self'"
    player = f" http://{host}{HLS_JS} https://{host}{HLS_JS}" if host else ""
    scripts, _, styles = inline.partition("; ")
    return (f"default-src 'none'; {scripts}{player}; {styles}; img-src 'self' data:; media-src 'self' blob:; "
            f"{connect}; base-uri 'none'; form-action 'none'")


@cache
def hls_player() -> bytes:
    return (STATIC / HLS_JS.rsplit("/", 1)[1]).read_bytes()


def install_dashboard(app: FastAPI) -> None:
    @app.get(HLS_JS, include_in_schema=False)
    def player() -> Response:
        return Response(hls_player(), media_type="text/javascript",
                        headers={"Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"})

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        page, inline = dashboard_page()
        host = request.headers.get("host", "")
        policy = content_security_policy(inline, host if HOST.fullmatch(host) else "")
        return HTMLResponse(page, headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy})
