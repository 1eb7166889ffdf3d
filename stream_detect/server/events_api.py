"""The event history over HTTP: ``GET /events``, ``GET /events/{id}``, ``GET /counts``.

Installed on the application by :func:`install_events_api` (``install_events_api(app,
store)`` beside the other ``install_*`` calls of :func:`~stream_detect.server.app.create_app`).
Authentication is the application's :class:`~stream_detect.server.app.TokenMiddleware`,
as for every other route: these routes add none of their own.

Parameters arrive as text and are checked here, so a bad value is a 422 whose
body is the server's usual one line, ``{"error": "limit must be ..."}``, naming
the parameter. Times are epoch seconds (``1764745200.5``) or ISO 8601
(``2026-12-03T07:00:00Z``; without an offset, UTC); ``after`` is inclusive,
``before`` exclusive. An empty value is the same as leaving the parameter out.
Queries run on a worker thread, each on its own read-only connection.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from ..errors import EventStoreError, InputError
from ..events.envelope import KINDS
from ..events.query import BUCKETS, DEFAULT_LIMIT, MAX_LIMIT, EventQueries

TIME_HELP = "epoch seconds or ISO 8601 (UTC when no offset is given)"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _text(value: str | None) -> str | None:
    return value if value else None


def parse_time(name: str, value: str | None) -> float | None:
    """``value`` as epoch seconds: a number, or an ISO 8601 time (UTC when it has no offset).

    Raises:
        InputError: neither, or not finite.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InputError(f"{name} must be epoch seconds or an ISO 8601 time, not {value[:100]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if not math.isfinite(seconds):
        raise InputError(f"{name} must be a finite number of epoch seconds, not {value[:100]!r}")
    return seconds


def parse_limit(value: str | None) -> int:
    """``value`` as a page size, 1 to :data:`MAX_LIMIT` (:data:`DEFAULT_LIMIT` when absent)."""
    if not value:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value[:100]!r}")
    return limit


def install_events_api(app: FastAPI, store: EventQueries) -> None:
    """Adds the event history's routes over ``store`` (an ``EventStore`` or an ``EventReader``)."""

    @app.get("/events", tags=["events"], response_model=None)
    async def list_events(
        stream: Annotated[str | None, Query(description="a stream id")] = None,
        kind: Annotated[str | None, Query(description=f"one of {', '.join(KINDS)}")] = None,
        label: Annotated[str | None, Query(description="an object label, e.g. person")] = None,
        zone: Annotated[str | None, Query(description="a zone name")] = None,
        line: Annotated[str | None, Query(description="a line name")] = None,
        after: Annotated[str | None, Query(description=f"events at or after this time: {TIME_HELP}")] = None,
        before: Annotated[str | None, Query(description=f"events before this time: {TIME_HELP}")] = None,
        limit: Annotated[str | None, Query(description=f"events per page, 1 to {MAX_LIMIT} "
                                                        f"(default {DEFAULT_LIMIT})")] = None,
        cursor: Annotated[str | None, Query(description="the previous page's next")] = None,
    ) -> JSONResponse:
        """Events newest first, one page: ``{"events": [...], "next": cursor | null}``.

        Pass ``next`` back as ``cursor`` (with the same filters) for the following page;
        ``null`` means this page is the last.
        """
        try:
            page, following = await asyncio.to_thread(
                store.query, stream=_text(stream), kind=_text(kind), label=_text(label), zone=_text(zone),
                line=_text(line), after=parse_time("after", after), before=parse_time("before", before),
                limit=parse_limit(limit), cursor=_text(cursor))
        except InputError as error:
            return _error(422, str(error))
        except EventStoreError as error:
            return _error(503, str(error))
        return JSONResponse({"events": page, "next": following})

    @app.get("/events/{event_id}", tags=["events"], response_model=None)
    async def get_event(event_id: str) -> JSONResponse:
        """One event by its id; 404 when there is none."""
        try:
            event = await asyncio.to_thread(store.get, event_id)
        except EventStoreError as error:
            return _error(503, str(error))
        if event is None:
            return _error(404, f"no event {event_id[:100]!r}")
        return JSONResponse(event)

    @app.get("/counts", tags=["events"], response_model=None)
    async def counts(
        stream: Annotated[str | None, Query(description="a stream id (default: every stream)")] = None,
        after: Annotated[str | None, Query(description=f"from this time: {TIME_HELP}")] = None,
        before: Annotated[str | None, Query(description=f"until this time: {TIME_HELP}")] = None,
        bucket: Annotated[str | None, Query(description=f"one of {', '.join(BUCKETS)} (default hour)")] = None,
    ) -> JSONResponse:
        """Line crossings (per line and direction) and zone entries (per zone), per UTC time bucket.

        ``{"bucket": "hour", "bucket_s": 3600, "after": .., "before": .., "buckets": [{"start": epoch s,
        "end": epoch s, "lines": [{"stream", "line", "in", "out"}], "zones": [{"stream", "zone",
        "entered"}]}]}``, oldest bucket first, buckets without any left out.
        """
        try:
            answer = await asyncio.to_thread(
                store.counts, stream=_text(stream), after=parse_time("after", after),
                before=parse_time("before", before), bucket=_text(bucket) or "hour")
        except InputError as error:
            return _error(422, str(error))
        except EventStoreError as error:
            return _error(503, str(error))
        return JSONResponse(answer)


def install_events_off(app: FastAPI) -> None:
    """The history's routes when it is off: a 404 that says why, rather than an unknown path."""
    message = "the event history is off (events.enabled is false, or there is no data directory)"

    @app.get("/events", tags=["events"], include_in_schema=False)
    @app.get("/events/{event_id}", tags=["events"], include_in_schema=False)
    @app.get("/counts", tags=["events"], include_in_schema=False)
    async def history_off() -> JSONResponse:
        return _error(404, message)
