"""The HTTP application: one port for the API, the websocket and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..config import DEFAULT_MODEL_NAME
from ..events.query import ObjectQueries
from ..metrics import CONTENT_TYPE
from ..ports import ClusterView, HlsPlaylists, Lifecycle
from .api_docs import install_api_docs
from .context import ServerContext
from .dashboard import install_dashboard
from .events_api import install_events_api, install_events_off
from .hls_api import install_hls_api
from .hosts import HostCheck
from .inference_api import InferenceApi, install_inference_api
from .media_api import install_media_api
from .preview import Previews, install_preview
from .streams_api import StreamsApi, install_streams_api
from .webhooks_api import DeliveryQueries, install_webhooks_api
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


def create_app(context: ServerContext, lifecycle: Lifecycle, previews: Previews, inference: InferenceApi,
               streams_api: StreamsApi, events: ObjectQueries | None = None,
               deliveries: DeliveryQueries | None = None, snapshots_dir: Path | None = None,
               clips_dir: Path | None = None, hls: HlsPlaylists | None = None,
               cluster: ClusterView | None = None) -> FastAPI:
    """The application over already wired parts (see :func:`stream_detect.compose.build_app`).

    ``events``: the event history read by ``/events`` and ``/counts`` (None: they answer 404, it is off).
    ``deliveries``: the webhooks' outbox read by ``/webhooks/deliveries`` (None: no webhooks).
    ``snapshots_dir``, ``clips_dir``: where the objects' snapshots and clips are (``/events/{id}/...``).
    ``hls``: the re-streamed streams' HLS (``/streams/{id}/hls/index.m3u8``; None: no such routes).
    ``cluster``: a cluster run's nodes (``/cluster``; None: one process, no such routes).

    Starting it starts ``lifecycle`` (the pipeline); stopping it stops it.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.hub.bind(asyncio.get_running_loop())
        lifecycle.start()
        try:
            yield
        finally:
            context.hub.unbind()
            await asyncio.to_thread(lifecycle.stop)

    # install_api_docs serves /docs and /redoc: FastAPI's own pages load their assets from a CDN.
    app = FastAPI(title="stream-detect", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.context = context
    app.add_middleware(TokenMiddleware, context=context)
    app.add_middleware(HostMiddleware, context=context)  # added last: runs first
    app.add_api_websocket_route("/ws", websocket_endpoint)
    install_inference_api(app, inference)
    app.state.previews = previews
    install_preview(app, context, previews)
    install_streams_api(app, streams_api)
    if hls is not None:
        install_hls_api(app, hls, context.auth)
    if cluster is not None:
        from .cluster_api import install_cluster_api

        install_cluster_api(app, cluster)
    if events is not None:
        install_events_api(app, events)
        if snapshots_dir is not None:
            install_media_api(app, events, snapshots_dir, clips_dir,
                              fetch=cluster.fetch_media if cluster is not None else None)
    else:
        install_events_off(app)
    if deliveries is not None:
        install_webhooks_api(app, deliveries)
    install_dashboard(app)
    install_api_docs(app, tokens_required=context.auth.enabled, open_paths=OPEN_PATHS)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """Liveness and readiness: 200 once the model is loaded, 503 before or if it failed."""
        models = {name: model.status() for name, model in context.models.items()}
        default = models[DEFAULT_MODEL_NAME]
        body: dict[str, object] = {"status": "ok" if default.ready else default.state, "model": default.served_id}
        if default.error:
            body["error"] = default.error
        if len(models) > 1:  # every model, by name: each must be loaded to be healthy
            body["models"] = {name: {"model": status.served_id, "state": status.state, "error": status.error}
                              for name, status in models.items()}
        ready = all(status.ready for status in models.values())
        if not ready and default.ready:
            body["status"] = "degraded"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/streams", tags=["streams"])
    def streams() -> dict[str, object]:
        """Every stream with its state, frame rates, drops and latency."""
        return {"streams": [stream.describe() for stream in context.streams.all()]}

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(context.metrics.render(), media_type=CONTENT_TYPE)

    return app
