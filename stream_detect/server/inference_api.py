"""The Hugging Face Inference API for object detection: ``POST /`` and ``POST /models/{id}``.

Request bodies are raw image bytes, or JSON ``{"inputs": "<base64 or data:
URL>", "parameters": {"threshold": 0.9}}``; answers are the HF detection list
or ``{"error": ...}``. Client mistakes are 4xx, never 5xx: every failure of a
request's own making is an :class:`ApiError` with its status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..errors import ImageTooLargeError, InputError, ModelError, ModelNotReadyError, UnsupportedMediaError
from ..images import decode_image
from ..inference import AnswerCache, InferenceLane, QueueFullError
from ..serialize import to_hf_elements
from .context import ServerContext

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # transformers' object-detection pipeline default


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _header_flag(request: Request, name: str, default: bool) -> bool:
    value = request.headers.get(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ApiError(400, f"header {name} must be true or false, got {value[:20]!r}")


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """Reads the body, refusing (413) as soon as it exceeds ``limit`` bytes, and
    (408) when it has not all arrived within ``timeout_s``: a client sending a
    byte at a time must not hold a request open for ever."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes is larger than the limit of {limit} bytes")
    try:
        return await asyncio.wait_for(_read_chunks(request, limit), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body did not arrive within {timeout_s:g} s") from None


async def _read_chunks(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_threshold(parameters: Any, default: float) -> float:
    if parameters is None:
        return default
    if not isinstance(parameters, dict):
        raise ApiError(422, "parameters must be an object")
    value = parameters.get("threshold")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(422, f"parameters.threshold must be a number, got {str(value)[:40]!r}")
    if not 0 <= value <= 1:
        raise ApiError(422, f"parameters.threshold must be between 0 and 1, got {value}")
    return float(value)


def _decode_inputs(inputs: Any) -> bytes:
    if not isinstance(inputs, str) or not inputs:
        raise ApiError(400, "inputs must be a base64-encoded image (or a data: URL)")
    if inputs.startswith(("http://", "https://", "ftp://", "file:")):
        raise ApiError(400, "inputs must be the image itself (base64); URLs are not fetched")
    if inputs.startswith("data:"):
        header, sep, payload = inputs.partition(",")
        if not sep or ";base64" not in header:
            raise ApiError(400, "a data: URL in inputs must be base64-encoded")
        inputs = payload
    try:
        return base64.b64decode(inputs.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "inputs is not valid base64") from None


def parse_request(body: bytes, content_type: str, default_threshold: float) -> tuple[bytes, float]:
    """Returns ``(image bytes, threshold)`` of a raw-image or JSON request."""
    if not body:
        raise ApiError(400, "request body is empty: send image bytes or JSON with 'inputs'")
    is_json = "json" in content_type.lower() or body.lstrip()[:1] == b"{"
    if not is_json:
        return body, default_threshold
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ApiError(400, "JSON body must be an object with 'inputs'")
    return _decode_inputs(payload["inputs"]), _parse_threshold(payload.get("parameters"), default_threshold)


class InferenceApi:
    """Answers inference requests through the shared detector worker."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.config = context.config
        self.lane = InferenceLane(self.config.api_queue_size, context.pipeline.wakeup)
        self.cache = AnswerCache(self.config.api_cache_size)
        model = context.pipeline.config.model
        # Only an explicitly configured threshold changes the API default.
        fields = model.model_fields_set
        self.default_threshold = model.threshold if "threshold" in fields else DEFAULT_THRESHOLD
        context.pipeline.worker.add_lane(self.lane)

    def served_ids(self) -> set[str]:
        pipeline = self.context.pipeline
        model = pipeline.config.model
        ids = {pipeline.model_id, model.id}
        if model.name:
            ids.add(model.name)
        return {i.strip("/") for i in ids}

    async def handle(self, request: Request, model_id: str | None) -> Response:
        try:
            return await self._handle(request, model_id)
        except ApiError as error:
            log.warning("inference request refused (%d): %s", error.status, error)
            return _error(error.status, str(error), **error.extra)

    async def _handle(self, request: Request, model_id: str | None) -> Response:
        if model_id is not None and model_id.strip("/") not in self.served_ids():
            raise ApiError(404, f"model {model_id[:200]!r} is not served here")
        use_cache = _header_flag(request, "x-use-cache", True)
        wait_for_model = _header_flag(request, "x-wait-for-model", False)
        body = await _read_body(request, self.config.max_body_bytes, self.config.body_timeout_s)
        image_bytes, threshold = parse_request(body, request.headers.get("content-type", ""), self.default_threshold)
        key = AnswerCache.key(image_bytes, threshold)
        if use_cache and (cached := self.cache.get(key)) is not None:
            return JSONResponse(cached, headers={"x-cache": "hit"})
        await self._ensure_model(wait_for_model)
        image = await asyncio.to_thread(self._decode, image_bytes)
        answer = to_hf_elements(await self._detect(image, threshold))
        self.cache.put(key, answer)
        return JSONResponse(answer, headers={"x-cache": "miss"})

    def _decode(self, data: bytes) -> Any:
        try:
            return decode_image(data, self.config.max_image_pixels)
        except ImageTooLargeError as error:
            raise ApiError(413, str(error)) from None
        except UnsupportedMediaError as error:
            raise ApiError(415, str(error)) from None
        except InputError as error:
            raise ApiError(400, str(error)) from None

    async def _ensure_model(self, wait: bool) -> None:
        worker = self.context.pipeline.worker
        try:
            worker.check_ready()
            return
        except ModelNotReadyError as error:
            if not wait:
                raise ApiError(503, str(error), estimated_time=error.estimated_time) from None
        except ModelError as error:
            raise ApiError(503, str(error)) from None
        await asyncio.to_thread(worker.wait_ready, self.config.request_timeout_s)
        try:
            worker.check_ready()
        except ModelError as error:
            raise ApiError(503, str(error)) from None

    async def _detect(self, image: Any, threshold: float) -> Any:
        try:
            future = self.lane.submit(image, threshold)
        except QueueFullError as error:
            raise ApiError(503, str(error), estimated_time=1.0) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.config.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            raise ApiError(504, "the detector did not answer in time") from None
        except ModelError as error:
            raise ApiError(503, str(error)) from None


REQUEST_BODY = {
    "description": "Raw image bytes (JPEG, PNG, WebP, BMP, GIF, TIFF), or JSON with a base64 image.",
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "inputs": {"type": "string", "description": "base64 image or data: URL"},
                    "parameters": {
                        "type": "object",
                        "properties": {"threshold": {"type": "number", "minimum": 0, "maximum": 1}},
                    },
                },
            }
        },
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The detections, as the Hugging Face Inference API returns them.",
        "content": {"application/json": {"schema": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "score": {"type": "number"},
                "box": {"type": "object", "properties": {
                    k: {"type": "integer"} for k in ("xmin", "ymin", "xmax", "ymax")}},
            },
        }}}},
    },
    **{
        status: {"description": text, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"error": {"type": "string"}}}}}}
        for status, text in (
            (400, "Malformed request"), (401, "Missing or wrong token"), (404, "Unknown model"),
            (408, "Request body too slow"),
            (413, "Body or image too large"), (415, "Not an accepted image format"),
            (422, "Invalid parameters"), (503, "Model loading or busy (see estimated_time)"),
        )
    },
}


def install_inference_api(app: FastAPI, context: ServerContext) -> InferenceApi:
    """Adds ``POST /`` and ``POST /models/{model_id}`` to ``app``."""
    api = InferenceApi(context)
    openapi = {"requestBody": REQUEST_BODY}

    @app.post("/", tags=["inference"], responses=RESPONSES, openapi_extra=openapi, summary="Detect objects")
    async def detect_default(request: Request) -> Response:
        """Object detection with the served model (Hugging Face Inference API)."""
        return await api.handle(request, None)

    @app.post(
        "/models/{model_id:path}", tags=["inference"], responses=RESPONSES, openapi_extra=openapi,
        summary="Detect objects with a named model",
    )
    async def detect_model(request: Request, model_id: str) -> Response:
        """Object detection; ``model_id`` must be the served model's id or name."""
        return await api.handle(request, model_id)

    return api
