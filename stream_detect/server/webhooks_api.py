"""The webhooks' deliveries over HTTP: ``GET /webhooks/deliveries``.

Installed on the application by :func:`install_webhooks_api` (``install_webhooks_api(app,
sink)`` beside the other ``install_*`` calls), authenticated by the
application's token middleware like every route. Parameters are checked
here: a bad one is a 422 whose body is the server's one line,
``{"error": "status must be ..."}``. Each delivery's URL is the webhook's,
redacted (no user information, no secret query values); the signing secret
and the event body are never part of the answer.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from ..errors import InputError
from ..events.query import DEFAULT_LIMIT, MAX_LIMIT
from ..notify.webhook_outbox import STATUSES, WebhookOutboxError
from .events_api import parse_limit


class DeliveryQueries(Protocol):
    """What the route reads: a ``WebhookSink`` or a ``DeliveryReader``."""

    def deliveries(self, *, status: str | None = None, limit: int = DEFAULT_LIMIT,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]: ...


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install_webhooks_api(app: FastAPI, deliveries: DeliveryQueries) -> None:
    """Adds ``GET /webhooks/deliveries`` over ``deliveries``."""

    @app.get("/webhooks/deliveries", tags=["webhooks"], response_model=None)
    async def list_deliveries(
        status: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)} (default: all)")] = None,
        limit: Annotated[str | None, Query(description=f"deliveries per page, 1 to {MAX_LIMIT} "
                                                        f"(default {DEFAULT_LIMIT})")] = None,
        cursor: Annotated[str | None, Query(description="the previous page's next")] = None,
    ) -> JSONResponse:
        """Webhook deliveries newest first, one page: ``{"deliveries": [...], "next": cursor | null}``.

        Each delivery: ``webhook_id`` (the header the receiver saw, the same on every attempt),
        ``event_id``, ``url`` (redacted), ``status`` (pending, delivered or failed), ``attempts``,
        ``created_at``, ``last_at``, ``last_status`` (HTTP status, null after a connection error),
        ``last_error``, ``next_at`` (pending: when the next attempt is due) and ``finished_at``; times in
        epoch seconds. Pass ``next`` back as ``cursor`` (with the same status) for the following page.
        """
        if status and status not in STATUSES:
            return _error(422, f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
        try:
            page, following = await asyncio.to_thread(
                deliveries.deliveries, status=status or None, limit=parse_limit(limit), cursor=cursor or None)
        except InputError as error:
            return _error(422, str(error))
        except WebhookOutboxError as error:
            return _error(503, str(error))
        return JSONResponse({"deliveries": page, "next": following})
