"""The HTTP application: one port for the API, the websocket and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..config import ServerConfig
from ..detect.worker import WorkerState
from ..metrics import CONTENT_TYPE
from ..pipeline import Pipeline
from ..source_store import SourceStore
from .api_docs import install_api_docs
from .context import ServerContext
from .dashboard import install_dashboard
from .hosts import HostCheck
from .inference_api import install_inference_api
from .preview import install_preview
from .streams_api import install_streams_api
from .websocket import websocket_endpoint

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})


class HostMiddleware:
    """Answers 400 to HTTP requests and websocket handshakes whose Host is not this server's (DNS rebinding)."""

    def __init__(self, app: ASGIApp, context: ServerContext) -> None:
        self.app = app
        self.context = context
        self.hosts = HostCheck.for_server(context.config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"] or [None]
            refused = next((host for host in hosts if not self.hosts.allows(host)), "")
            if refused != "":
                self.context.metrics.hosts_refused.inc()
                log.info("refused a request for host %r: not in server.allowed_hosts", (refused or "")[:100])
                response = JSONResponse({"error": "Host header names no host this server answers for "
                                                  "(see server.allowed_hosts)"}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TokenMiddleware:
    """Answers 401 to HTTP requests without a valid token (``/healthz`` is open)."""

    def __init__(self, app: ASGIApp, context: ServerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.context.auth.enabled and scope["path"] not in OPEN_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if not self.context.auth.allows(headers, query):
                response = JSONResponse(
                    {"error": "Authorization header is missing or the token is not valid"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(pipeline: Pipeline, config: ServerConfig, store: SourceStore | None = None) -> FastAPI:
    """Builds the application. Starting it starts the pipeline; stopping it stops the pipeline.

    ``store`` keeps the streams changed through the API (none: the changes last until the process ends).
    """
    context = ServerContext.create(pipeline, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.hub.bind(asyncio.get_running_loop())
        pipeline.start()
        try:
            yield
        finally:
            context.hub.unbind()
            await asyncio.to_thread(pipeline.stop)

    # install_api_docs serves /docs and /redoc: FastAPI's own pages load their assets from a CDN.
    app = FastAPI(title="stream-detect", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.context = context
    app.add_middleware(TokenMiddleware, context=context)
    app.add_middleware(HostMiddleware, context=context)  # added last: runs first
    app.add_api_websocket_route("/ws", websocket_endpoint)
    install_inference_api(app, context)
    app.state.previews = install_preview(app, context)
    install_streams_api(app, context, store)
    install_dashboard(app)
    install_api_docs(app, tokens_required=context.auth.enabled, open_paths=OPEN_PATHS)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """Liveness and readiness: 200 once the model is loaded, 503 before or if it failed."""
        worker = pipeline.worker
        body = {"status": "ok" if worker.state == WorkerState.READY else worker.state, "model": pipeline.model_id}
        if worker.error:
            body["error"] = worker.error
        return JSONResponse(body, status_code=200 if worker.state == WorkerState.READY else 503)

    @app.get("/streams", tags=["streams"])
    def streams() -> dict[str, object]:
        """Every stream with its state, frame rates, drops and latency."""
        return {"streams": [stream.describe() for stream in pipeline.streams.values()]}

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(context.metrics.render(), media_type=CONTENT_TYPE)

    return app
