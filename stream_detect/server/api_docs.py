"""``GET /docs`` (Swagger UI) and ``GET /redoc`` (ReDoc), with their assets served from here.

FastAPI's own pages load their JavaScript and CSS from a CDN, so offline they
are blank. Here the assets come from the ``fastapi-offline`` package (Swagger
UI 5, which reads the OpenAPI 3.1 that FastAPI writes, and ReDoc), mounted at
``/docs-assets``: the pages load nothing from another host, except ReDoc's
footer logo, which offline is simply missing.

With tokens configured, the pages, ``/openapi.json`` and the assets need the
token like any other endpoint. A browser opens ``/docs?token=...``; the page
passes that token on to its assets and the API description, as the dashboard
does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_PATH = "/docs-assets"


def token_query(request: Request) -> str:
    """``?token=...`` when the page was opened with one, so its own requests pass the token check too."""
    token = request.query_params.get("token")
    return "?" + urlencode({"token": token}) if token else ""


def install_api_docs(app: FastAPI) -> None:
    """Adds ``/docs``, ``/redoc`` and their assets; ``app`` is created with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        query = token_query(request)
        return get_swagger_ui_html(
            openapi_url=openapi_url + query,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js{query}",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css{query}",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png{query}",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        query = token_query(request)
        return get_redoc_html(
            openapi_url=openapi_url + query,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js{query}",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png{query}",
            with_google_fonts=False,
        )
