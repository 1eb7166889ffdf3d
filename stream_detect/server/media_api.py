"""An event's picture and video over HTTP: ``GET /events/{id}/snapshot.jpg`` and ``GET /events/{id}/clip.mp4``.

Installed by :func:`install_media_api` beside :func:`~.events_api.install_events_api`. Every event of a
tracked object (``object.start``, ``zone.*``, ``line.cross``, ``object.end``) answers with its object's
media: the history names the object (:meth:`~stream_detect.events.query.EventReader.object_of`), and
the files are ``<snapshots_dir>/<stream>/<start-event-id>.jpg`` (with its ``.json`` sidecar, written by
:class:`~stream_detect.events.snapshots.SnapshotSink`) and ``<clips_dir>/<stream>/<start-event-id>.mp4``.
Paths are built from the stream and id the history holds, never from the request's text, and only
when both are plain names (:func:`~stream_detect.events.media.media_path`).

``snapshot.jpg`` is the clean frame the object was best seen on. Its parameters, applied in this order:

- ``boxes=1``: the object's box drawn on it (:func:`~stream_detect.render.draw_detections`, with its
  label, track id and score);
- ``crop=1``: cut to the box with a margin of :data:`CROP_MARGIN` (a quarter) of the box's width
  on the left and right and of its height above and below, clamped to the frame;
- ``h=N``: scaled to ``N`` pixels high (:data:`MIN_HEIGHT` to :data:`MAX_HEIGHT`), the width in proportion.

``clip.mp4`` is served with HTTP range requests (Starlette's ``FileResponse``: ``206`` with
``Content-Range`` for ``Range: bytes=a-b``, ``416`` when nothing of the file is in the range), so a
browser's ``<video>`` can seek. Errors are the server's one line, ``{"error": ...}``: 404 for an
unknown event or media not written (yet), 422 for a bad parameter, 503 when the history cannot be read.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
import orjson
from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from ..errors import EventStoreError, InputError
from ..events.media import media_path
from ..events.query import ObjectQueries
from ..records import Detections
from ..render import draw_detections
from .preview import encode_jpeg

CROP_MARGIN = 0.25
MIN_HEIGHT, MAX_HEIGHT = 16, 2160
JPEG_QUALITY = 90
FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_flag(name: str, value: str | None) -> bool:
    """``1``/``true``/``yes`` or ``0``/``false``/``no`` (any case); absent or empty: false.

    Raises:
        InputError: another value.
    """
    if not value:
        return False
    flag = FLAGS.get(value.strip().lower())
    if flag is None:
        raise InputError(f"{name} must be 1 or 0, not {value[:100]!r}")
    return flag


def parse_height(value: str | None) -> int | None:
    """A height in pixels from :data:`MIN_HEIGHT` to :data:`MAX_HEIGHT`; absent or empty: None.

    Raises:
        InputError: not a whole number in that range.
    """
    if not value:
        return None
    try:
        height = int(value)
    except ValueError:
        height = 0
    if not MIN_HEIGHT <= height <= MAX_HEIGHT:
        raise InputError(f"h must be a whole number of pixels from {MIN_HEIGHT} to {MAX_HEIGHT}, not {value[:100]!r}")
    return height


def crop_rect(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """The ``(x0, y0, x1, y1)`` (exclusive ends) of ``box`` widened by :data:`CROP_MARGIN` of its size on
    each side, clamped to a ``width`` x ``height`` frame, at least one pixel each way."""
    xmin, ymin, xmax, ymax = box
    margin_x, margin_y = CROP_MARGIN * max(0.0, xmax - xmin), CROP_MARGIN * max(0.0, ymax - ymin)
    x0 = min(max(0, int(np.floor(xmin - margin_x))), width - 1)
    y0 = min(max(0, int(np.floor(ymin - margin_y))), height - 1)
    x1 = max(x0 + 1, min(width, int(np.ceil(xmax + margin_x))))
    y1 = max(y0 + 1, min(height, int(np.ceil(ymax + margin_y))))
    return x0, y0, x1, y1


def render_snapshot(jpeg: bytes, sidecar: dict[str, Any], *, boxes: bool, crop: bool, height: int | None) -> bytes:
    """The stored snapshot ``jpeg`` with its object's box drawn, cropped and scaled as asked (pure)."""
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("the stored snapshot does not decode")
    image = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    box_of = sidecar["box"]
    box = (float(box_of["xmin"]), float(box_of["ymin"]), float(box_of["xmax"]), float(box_of["ymax"]))
    if boxes:
        detections = Detections.from_lists([box], [float(sidecar["score"])], [0], [str(sidecar["label"])])
        image = draw_detections(image, detections, track_ids=[int(sidecar["track_id"])])
    if crop:
        x0, y0, x1, y1 = crop_rect(box, image.shape[1], image.shape[0])
        image = np.ascontiguousarray(image[y0:y1, x0:x1])
    if height is not None and height != image.shape[0]:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    return encode_jpeg(image, JPEG_QUALITY)


MediaFetch = Callable[[str, str, str], bytes | None]


def _kept(path: Path, data: bytes) -> None:
    """Writes a fetched file whole (a reader sees it complete or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def install_media_api(app: FastAPI, history: ObjectQueries, snapshots_dir: Path, clips_dir: Path | None,
                      fetch: MediaFetch | None = None) -> None:
    """Adds ``/events/{id}/snapshot.jpg`` and ``/events/{id}/clip.mp4`` over ``history`` (an ``EventReader``:
    ``EventStore.reader``); ``clips_dir`` None: clips are off, and say so.

    ``fetch(stream, start_id, suffix)``: where media not made here come from (a cluster's nodes, which
    make them from their cameras' frames); what it gives is kept in the same directories, so it is
    fetched once and swept with the history like media made here.
    """

    def object_files(event_id: str, directory: Path, suffix: str) -> tuple[Path | None, str]:
        """The file of ``event_id``'s object, or None and why (on a worker thread)."""
        event = history.get(event_id)
        if event is None:
            return None, f"no event {event_id[:100]!r}"
        start_id = history.object_of(event_id)
        if start_id is None:
            return None, f"event {event_id[:100]!r} belongs to no object in the history"
        stream = str(event["stream"])
        path = media_path(directory, stream, start_id, suffix)
        if path is None:
            return None, f"event {event_id[:100]!r}: its stream or object has no media name"
        if fetch is not None and not path.exists():
            for wanted in (suffix, ".json") if suffix == ".jpg" else (suffix,):
                data = fetch(stream, start_id, wanted)
                if data is not None:
                    _kept(path.with_suffix(wanted), data)
        return path, f"event {event_id[:100]!r} has no {'snapshot' if suffix == '.jpg' else 'clip'} yet"

    def snapshot(event_id: str, boxes: bool, crop: bool, height: int | None) -> bytes | str:
        path, why = object_files(event_id, snapshots_dir, ".jpg")
        if path is None:
            return why
        try:
            jpeg = path.read_bytes()
            if not (boxes or crop or height):
                return jpeg
            sidecar = orjson.loads(path.with_suffix(".json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return why
        return render_snapshot(jpeg, sidecar, boxes=boxes, crop=crop, height=height)

    @app.get("/events/{event_id}/snapshot.jpg", tags=["events"], response_model=None,
             responses={200: {"content": {"image/jpeg": {}}}})
    async def event_snapshot(
        event_id: str,
        boxes: Annotated[str | None, Query(description="1: draw the object's box")] = None,
        crop: Annotated[str | None, Query(description="1: crop to the object's box, a quarter of its size "
                                                      "around it")] = None,
        h: Annotated[str | None, Query(description=f"scale to this height in pixels, {MIN_HEIGHT} to "
                                                   f"{MAX_HEIGHT}")] = None,
    ) -> Response:
        """The snapshot of the object this event belongs to: the clean frame it was best seen on (JPEG).

        404 when the event is unknown or its object has no snapshot yet (it is written when the object ends).
        """
        try:
            options = parse_flag("boxes", boxes), parse_flag("crop", crop), parse_height(h)
            answer = await asyncio.to_thread(snapshot, event_id, *options)
        except InputError as error:
            return _error(422, str(error))
        except EventStoreError as error:
            return _error(503, str(error))
        except (ValueError, KeyError, TypeError) as error:  # a damaged file: said, not a traceback
            return _error(404, f"event {event_id[:100]!r}: its snapshot cannot be read ({error})")
        if isinstance(answer, str):
            return _error(404, answer)
        return Response(answer, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})

    def clip(event_id: str) -> tuple[Path, os.stat_result] | str:
        assert clips_dir is not None
        path, why = object_files(event_id, clips_dir, ".mp4")
        if path is None:
            return why
        try:
            found = path.stat()
        except OSError:
            return why
        return (path, found) if stat.S_ISREG(found.st_mode) else why

    @app.api_route("/events/{event_id}/clip.mp4", methods=["GET", "HEAD"], tags=["events"], response_model=None,
                   responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "the range asked for"},
                              416: {"description": "the range is outside the clip"}})
    async def event_clip(event_id: str) -> Response:
        """The clip of the object this event belongs to (MP4), with range requests for seeking.

        404 when the event is unknown, its object has no clip (yet), or clips are off.
        """
        if clips_dir is None:
            return _error(404, "clips are off")
        try:
            answer = await asyncio.to_thread(clip, event_id)
        except EventStoreError as error:
            return _error(503, str(error))
        if isinstance(answer, str):
            return _error(404, answer)
        path, found = answer
        return FileResponse(path, media_type="video/mp4", stat_result=found)
