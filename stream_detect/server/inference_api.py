"""The Hugging Face Inference API for object detection: ``POST /`` and ``POST /models/{id}``.

Request bodies are raw image bytes, or JSON ``{"inputs": "<base64 or data:
URL>", "parameters": {"threshold": 0.9}}``; answers are the HF detection list
or ``{"error": ...}``. Client mistakes are 4xx, never 5xx: every failure of a
request's own making is an :class:`ApiError` with its status.

Memory: a few kilobytes of PNG can decode to a hundred megabytes, so decoding
is planned from the header first. An image is decoded reduced by an integer
factor that still leaves it larger than what the model's processor would
resize it to (the answer's boxes are scaled back to the original's pixels),
decoding runs on the API's own small thread pool, and a :class:`PixelBudget`
bounds the pixels being decoded, and then waiting for the detector, at once
(``server.decode_pixels_in_flight``). A large decode gives its freed heap back
to the system (:func:`~stream_detect.images.give_back_freed_memory`).

Waiting for the model (``x-wait-for-model``) awaits the model port's ``loaded``
future: a waiting request holds no thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..config import DEFAULT_MODEL_NAME, ModelConfig
from ..errors import ImageTooLargeError, InputError, ModelError, ModelNotReadyError, UnsupportedMediaError
from ..images import OpenedImage, give_back_freed_memory, open_image
from ..inference import AnswerCache, QueueFullError
from ..ports import ModelPort
from ..records import Detections
from ..serialize import to_hf_elements
from .context import ServerContext

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # transformers' object-detection pipeline default
DECODE_THREADS = 2  # decoding is CPU-bound: more threads than cores only add memory in flight
# A request decoding this many pixels gives the freed heap back to the system,
# after its decode and after its answer (see give_back_freed_memory).
TRIM_AFTER_PIXELS = 4_000_000
# Large images are decoded reduced, to no less than this many times the model's
# input in both sides, so the processor's own antialiased resize still does the
# last step: on the demo camera's frame scaled to 3840x2160 the boxes then
# equal the full-size answer within 1.1 px; reduced to just the input size
# (the processor resizing 350x197 to 320x192) they moved by up to 18 px.
REDUCED_INPUT_MARGIN = 2

T = TypeVar("T")


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


class PixelBudget:
    """A semaphore counted in pixels, first come first served.

    A request for more than the whole budget waits until it is alone and then
    takes all of it, so one huge image is decoded, but never next to another.
    Used on the event loop only.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.available = total
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, pixels: int) -> BudgetHold:
        """Waits until ``pixels`` (at most the whole budget) are free and holds them."""
        amount = min(pixels, self.total)
        if not self._waiting and amount <= self.available:
            self.available -= amount
            return BudgetHold(self, amount)
        granted = asyncio.get_running_loop().create_future()
        entry = (amount, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(amount)  # granted just as the wait was given up
            else:
                self._waiting.remove(entry)
                self._grant()  # a large request leaving the head may let smaller ones through
            raise
        return BudgetHold(self, amount)

    def _release(self, amount: int) -> None:
        self.available += amount
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.available:
            amount, granted = self._waiting.popleft()
            self.available -= amount
            granted.set_result(None)


class BudgetHold:
    """Pixels held from a :class:`PixelBudget`; :meth:`keep` gives back what is no longer needed."""

    def __init__(self, budget: PixelBudget, pixels: int) -> None:
        self._budget = budget
        self.pixels = pixels

    def keep(self, pixels: int) -> None:
        """Keeps at most ``pixels`` of the hold: 0 releases it all."""
        freed = self.pixels - min(pixels, self.pixels)
        if freed:
            self.pixels -= freed
            self._budget._release(freed)


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


@dataclass(eq=False)
class ModelRoute:
    """What the API keeps of one model: its port (state, lane), its default threshold."""

    name: str
    model: ModelPort
    default_threshold: float
    ready: asyncio.Future[None] | None = None  # one asyncio view of the model's load, for every waiter


def _default_threshold(model: ModelConfig) -> float:
    # Only an explicitly configured threshold changes the API default.
    return model.threshold if "threshold" in model.model_fields_set else DEFAULT_THRESHOLD


class InferenceApi:
    """Answers inference requests through the models' ports (their detector workers' lanes).

    ``POST /`` is answered by the default model, ``POST /models/{name}`` by the
    model of that name; a model answers to its configured name, its served id
    and its hub id or directory (:meth:`names`).
    """

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.config = context.config
        self.routes = {name: ModelRoute(name, model, _default_threshold(model.config))
                       for name, model in context.models.items()}
        self.cache = AnswerCache(self.config.api_cache_size)
        self.budget = PixelBudget(self.config.decode_pixels_in_flight)
        # Not asyncio's default pool: the preview encodes there, and a burst of
        # large images must not hold it. Threads start on first use.
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="api-decode")

    def names(self) -> dict[str, str]:
        """Every name a model answers to -> the model's name."""
        names: dict[str, str] = {}
        for route in self.routes.values():
            for alias in route.model.status().aliases:
                names[alias] = route.name
        return names

    def route(self, model_id: str | None) -> ModelRoute:
        if model_id is None:
            return self.routes[DEFAULT_MODEL_NAME]
        name = self.names().get(model_id.strip("/"))
        if name is None:
            served = sorted({route.model.status().served_id for route in self.routes.values()} | set(self.routes))
            raise ApiError(404, f"model {model_id[:200]!r} is not served here", models=served)
        return self.routes[name]

    async def handle(self, request: Request, model_id: str | None) -> Response:
        try:
            return await self._handle(request, model_id)
        except ApiError as error:
            if error.status >= 500:
                log.warning("inference request failed (%d): %s", error.status, error)
            else:
                log.warning("inference request refused (%d): %s", error.status, error)
            return _error(error.status, str(error), **error.extra)

    async def _handle(self, request: Request, model_id: str | None) -> Response:
        route = self.route(model_id)
        use_cache = _header_flag(request, "x-use-cache", True)
        wait_for_model = _header_flag(request, "x-wait-for-model", False)
        body = await _read_body(request, self.config.max_body_bytes, self.config.body_timeout_s)
        image_bytes, threshold = parse_request(body, request.headers.get("content-type", ""),
                                               route.default_threshold)
        key = AnswerCache.key(image_bytes, threshold, route.name)
        if use_cache and (cached := self.cache.get(key)) is not None:
            return JSONResponse(cached, headers={"x-cache": "hit"})
        await self._ensure_model(route, wait_for_model)
        answer = to_hf_elements(await self._answer(route, image_bytes, threshold))
        self.cache.put(key, answer)
        return JSONResponse(answer, headers={"x-cache": "miss"})

    async def _answer(self, route: ModelRoute, image_bytes: bytes, threshold: float) -> Detections:
        """Decodes within the pixel budget, detects, and scales the boxes back to the original's pixels."""
        opened = await self._in_decoder(_open, image_bytes, self.config.max_image_pixels)
        try:
            height, width = route.model.input_size(opened.height, opened.width)
            decoding = opened.plan((height * REDUCED_INPUT_MARGIN, width * REDUCED_INPUT_MARGIN))
        except InputError as error:
            raise ApiError(400, str(error)) from None
        except ModelError as error:  # pragma: no cover - ready means loaded
            raise ApiError(503, str(error)) from None
        try:
            hold = await asyncio.wait_for(self.budget.acquire(decoding), self.config.request_timeout_s)
        except TimeoutError:
            raise ApiError(503, "too many large images are being decoded", estimated_time=1.0) from None
        try:
            image = await self._in_decoder(_decode, opened, decoding)
            hold.keep(image.shape[0] * image.shape[1])  # held until the detector is done with it
            detections = await self._detect(route, image, threshold)
        finally:
            hold.keep(0)
            if decoding >= TRIM_AFTER_PIXELS:
                self.decoder.submit(give_back_freed_memory)  # and what the detector freed
        return detections.scaled(opened.width / image.shape[1], opened.height / image.shape[0])

    async def _in_decoder(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.decoder, function, *args)

    async def _ensure_model(self, route: ModelRoute, wait: bool) -> None:
        """Returns once the model is loaded; waiting for it (without a thread) when asked to."""
        model = route.model
        try:
            model.check_ready()
        except ModelNotReadyError as error:
            if not wait:
                raise ApiError(503, str(error), estimated_time=error.estimated_time) from None
            await self._wait_for_model(route)
        except ModelError as error:
            raise ApiError(503, str(error)) from None
        try:
            model.check_ready()
        except ModelNotReadyError as error:
            raise ApiError(503, str(error), estimated_time=error.estimated_time) from None
        except ModelError as error:
            raise ApiError(503, str(error)) from None

    async def _wait_for_model(self, route: ModelRoute) -> None:
        if route.ready is None:
            # One asyncio view of the model's future for every waiting request;
            # shielded, so a request that gives up never cancels it for the others.
            route.ready = asyncio.wrap_future(route.model.loaded)
        with contextlib.suppress(TimeoutError):  # still loading: the caller answers 503
            await asyncio.wait_for(asyncio.shield(route.ready), self.config.request_timeout_s)

    async def _detect(self, route: ModelRoute, image: np.ndarray, threshold: float) -> Detections:
        try:
            future = route.model.submit(image, threshold)
        except QueueFullError as error:
            raise ApiError(503, str(error), estimated_time=1.0) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.config.request_timeout_s)
        except TimeoutError:
            future.cancel()
            raise ApiError(504, "the detector did not answer in time") from None
        except InputError as error:
            raise ApiError(400, str(error)) from None
        except ModelError as error:
            raise ApiError(503, str(error)) from None
        except Exception as error:  # the detector's own failure, logged once by the worker
            raise ApiError(500, f"the detector failed on this image: {type(error).__name__}") from None


def _open(data: bytes, max_pixels: int) -> OpenedImage:
    """Reads the image's header (on the decoder pool): the request's own mistakes become 4xx."""
    try:
        return open_image(data, max_pixels)
    except ImageTooLargeError as error:
        raise ApiError(413, str(error)) from None
    except UnsupportedMediaError as error:
        raise ApiError(415, str(error)) from None
    except InputError as error:
        raise ApiError(400, str(error)) from None


def _decode(opened: OpenedImage, decoding_pixels: int) -> np.ndarray:
    try:
        return opened.decode()
    except InputError as error:
        raise ApiError(400, str(error)) from None
    finally:
        if decoding_pixels >= TRIM_AFTER_PIXELS:
            give_back_freed_memory()  # the full-size pixels, before the next decode adds to the peak


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


def install_inference_api(app: FastAPI, api: InferenceApi) -> None:
    """Adds ``POST /`` and ``POST /models/{model_id}`` to ``app``."""
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
