"""Cameras at run time: ``POST /streams``, ``PUT /streams/{id}``, ``DELETE /streams/{id}``.

A body is one source entry of the configuration, as JSON, validated by the
same model as the file (``kind`` may be left out and is guessed). The other
streams keep flowing: a change stops and starts only its own stream. Each
change is kept (:mod:`stream_detect.source_store`) before it is answered, so
it survives a restart.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..config import SourceConfig, parse_source
from ..errors import ConfigError, StreamExistsError, UnknownStreamError
from ..ports import StreamChanges, StreamRegistry
from ..source_store import SourceStore

MAX_ENTRY_BYTES = 64 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _entry(request: Request, stream_id: str | None = None) -> SourceConfig | JSONResponse:
    """The request's source entry, validated; or the error to answer."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ENTRY_BYTES:
            return _error(413, f"a source entry is at most {MAX_ENTRY_BYTES} bytes")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _error(400, "request body is not valid JSON: send one source entry as a JSON object")
    if not isinstance(data, dict):
        return _error(422, "request body must be one source entry (a JSON object)")
    if stream_id is not None:
        if "id" in data and data["id"] != stream_id:
            return _error(422, f"the entry's id {str(data['id'])[:100]!r} is not the stream's {stream_id!r}")
        data = {**data, "id": stream_id}
    try:
        return parse_source(data, origin="request body")
    except ConfigError as error:
        return _error(422, str(error))


class StreamsApi:
    """Applies run-time changes one at a time, keeping each before answering.

    Args:
        streams: The streams running now (read).
        changes: The one write port to them.
        store: Keeps the sources after each change; None: changes last as long as the process.
    """

    def __init__(self, streams: StreamRegistry, changes: StreamChanges, store: SourceStore | None) -> None:
        self.streams = streams
        self.changes = changes
        self.store = store
        self._lock = threading.Lock()  # a change and its saving happen together, in order

    def _saved(self) -> None:
        if self.store is not None:
            self.store.save(self.changes.sources())

    def add(self, source: SourceConfig) -> dict[str, Any]:
        with self._lock:
            stream = self.changes.add(source)
            self._saved()
            return stream.describe()

    def replace(self, source: SourceConfig) -> dict[str, Any]:
        with self._lock:
            stream = self.changes.replace(source)
            self._saved()
            return stream.describe()

    def remove(self, stream_id: str) -> None:
        with self._lock:
            self.changes.remove(stream_id)
            self._saved()


def install_streams_api(app: FastAPI, api: StreamsApi) -> None:
    """Adds the routes that change the set of streams."""

    @app.post("/streams", tags=["streams"], status_code=201, response_model=None)
    async def add_stream(request: Request) -> Response:
        """Adds a camera: the body is one source entry (JSON). 201 with its description, 409 if the id exists."""
        source = await _entry(request)
        if isinstance(source, JSONResponse):
            return source
        try:
            described = await asyncio.to_thread(api.add, source)
        except StreamExistsError as error:
            return _error(409, str(error))
        except ConfigError as error:  # a model that is not configured
            return _error(422, str(error))
        return JSONResponse(described, status_code=201, headers={"Location": f"/streams/{source.id}"})

    @app.put("/streams/{stream_id}", tags=["streams"], response_model=None)
    async def replace_stream(stream_id: str, request: Request) -> Response:
        """Replaces a camera's entry (a new URL, threshold, ...): it restarts under the same id."""
        if stream_id not in api.streams.ids():
            return _error(404, f"no stream {stream_id[:100]!r}")
        source = await _entry(request, stream_id)
        if isinstance(source, JSONResponse):
            return source
        try:
            described = await asyncio.to_thread(api.replace, source)
        except UnknownStreamError as error:
            return _error(404, str(error))
        except ConfigError as error:  # a model that is not configured: the stream runs on as it was
            return _error(422, str(error))
        return JSONResponse(described)

    @app.delete("/streams/{stream_id}", tags=["streams"], status_code=204, response_model=None)
    async def remove_stream(stream_id: str) -> Response:
        """Removes a camera: capture stopped, recording closed; its last message is its ``stopped`` status."""
        try:
            await asyncio.to_thread(api.remove, stream_id)
        except UnknownStreamError as error:
            return _error(404, str(error)[:200])
        return Response(status_code=204)
