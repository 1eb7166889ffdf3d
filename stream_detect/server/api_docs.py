"""``GET /docs`` (Swagger UI) and ``GET /redoc`` (ReDoc), with their assets served from here.

FastAPI's own pages load their JavaScript and CSS from a CDN, so offline they
are blank. Here the assets come from the ``fastapi-offline`` package (Swagger
UI 5, which reads the OpenAPI 3.1 that FastAPI writes, and ReDoc), mounted at
``/docs-assets``: the pages load nothing from another host. ReDoc's footer
would fetch its maker's logo; the pages' Content Security Policy allows
images from this server only, so the browser does not ask (and ReDoc leaves
the logo out).

With tokens configured, the pages, ``/openapi.json`` and the assets need the
token like any other endpoint. A browser opens ``/docs?token=...``; the page
passes that token on to its assets and the API description, as the dashboard
does. The API description then declares the bearer token, so Swagger UI's
"Try it out" sends it: the page opened with a token is already authorised,
and "Authorize" takes one by hand.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_PATH = "/docs-assets"
SECURITY_SCHEME = "bearerToken"
POLICY = {"Content-Security-Policy": "img-src 'self' data:"}  # no image from another host

SWAGGER_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{css}">
<link rel="shortcut icon" href="{favicon}">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{js}"></script>
<script>
const token = new URLSearchParams(window.location.search).get("token");
const ui = SwaggerUIBundle({{
  url: {spec},
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  onComplete: () => {{ if (token) ui.preauthorizeApiKey({scheme}, token); }},
}});
</script>
</body>
</html>
"""


def token_query(request: Request) -> str:
    """``?token=...`` when the page was opened with one, so its own requests pass the token check too."""
    token = request.query_params.get("token")
    return "?" + urlencode({"token": token}) if token else ""


def script_value(value: str) -> str:
    """A JavaScript string literal that cannot end the ``<script>`` element it is in."""
    return json.dumps(value).replace("<", "\\u003c")


def swagger_ui_html(title: str, openapi_url: str, query: str) -> HTMLResponse:
    return HTMLResponse(headers=POLICY, content=SWAGGER_PAGE.format(
        title=html.escape(title),
        css=html.escape(f"{ASSETS_PATH}/swagger-ui.css{query}"),
        favicon=html.escape(f"{ASSETS_PATH}/favicon.png{query}"),
        js=html.escape(f"{ASSETS_PATH}/swagger-ui-bundle.js{query}"),
        spec=script_value(openapi_url + query),
        scheme=script_value(SECURITY_SCHEME),
    ))


def declare_bearer_token(app: FastAPI, open_paths: Iterable[str]) -> None:
    """Makes the API description say that every operation but those on ``open_paths`` needs the token."""
    build = app.openapi
    open_paths = frozenset(open_paths)

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI builds the description once and keeps it; this adds to it once
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        if SECURITY_SCHEME not in schemes:
            schemes[SECURITY_SCHEME] = {
                "type": "http", "scheme": "bearer",
                "description": "One of the server's tokens (`server.tokens`), sent as `Authorization: Bearer <token>`.",
            }
            schema["security"] = [{SECURITY_SCHEME: []}]
            for path, operations in schema.get("paths", {}).items():
                if path in open_paths:
                    for operation in operations.values():
                        operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_api_docs(app: FastAPI, tokens_required: bool, open_paths: Iterable[str] = ()) -> None:
    """Adds ``/docs``, ``/redoc`` and their assets; ``app`` is created with ``docs_url=None, redoc_url=None``.

    With ``tokens_required``, the API description declares the bearer token for every
    path except ``open_paths``.
    """
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    if tokens_required:
        declare_bearer_token(app, open_paths)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return swagger_ui_html(f"{app.title} - Swagger UI", openapi_url, token_query(request))

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        query = token_query(request)
        page = get_redoc_html(
            openapi_url=openapi_url + query,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js{query}",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png{query}",
            with_google_fonts=False,
        )
        page.headers.update(POLICY)
        return page
