"""Snapshot and clip files of tracked objects: where they are, and their retention beside the event history.

Every file of an object is named by its ``object.start`` event's id, in a
directory per stream: ``DIRECTORY/<stream>/<start-event-id>.<ext>``
(``.jpg`` and its ``.json`` sidecar under the snapshots' directory, ``.mp4``
under the clips'). :func:`media_path` is the one place that builds such a
path: the stream and the id must be plain names (letters, digits, ``_``,
``.``, ``-``, starting with a letter or digit: what stream ids and event ids
of the analyzer are), so a value from anywhere else can never reach outside
the directory.

Retention: :func:`sweep` deletes the files of objects whose ``object.start``
is no longer in the history (deleted by the history's own retention, by age
or by count) or that started longer ago than the history's age limit, so
media live as long as the events that point at them. Each call looks at a
bounded number of objects and says where the next call continues.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
# The analyzer's event ids: <at in ms, 13 digits>-<stream>-<frame, 10 digits>-<n, 4 digits>.
_ID_TAIL = r"-\d{10}-\d{4}"
DEFAULT_MAX_OBJECTS = 1000
DEFAULT_GRACE_S = 60.0


def media_path(directory: Path, stream: str, start_id: str, suffix: str) -> Path | None:
    """``directory/<stream>/<start_id><suffix>``, or ``None`` when ``stream`` or ``start_id`` is not a
    plain name (see the module's docstring)."""
    if not NAME.fullmatch(stream) or not NAME.fullmatch(start_id) or start_id.endswith("."):
        return None
    return directory / stream / f"{start_id}{suffix}"


class KeptEvents(Protocol):
    """What the sweep asks of the history (an :class:`~stream_detect.events.query.EventReader`)."""

    def existing(self, event_ids: Collection[str]) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Swept:
    """What one :func:`sweep` call did.

    Attributes:
        examined: Objects looked at (a stream directory's files of one start id are one object).
        deleted_objects: Objects whose files were deleted.
        deleted_files: Files deleted (media, sidecars, leftovers of an interrupted write).
        resume: Where the next call continues (pass it as ``resume``); ``None``: this call reached the end,
            the next one starts over.
    """

    examined: int
    deleted_objects: int
    deleted_files: int
    resume: tuple[str, str, str] | None


@dataclass(frozen=True, slots=True)
class _Object:
    key: tuple[str, str, str]  # (directory, stream, start id)
    files: tuple[Path, ...]


def _start_time(start_id: str) -> float | None:
    """The epoch seconds an analyzer's event id begins with (its ``at`` in ms), or None."""
    head = start_id[:13]
    return int(head) / 1000.0 if len(start_id) > 13 and head.isdigit() and start_id[13] == "-" else None


def _objects_of(directory: Path, stream: str) -> list[_Object]:
    """The objects in one stream directory, sorted by start id: ``<id>.<ext...>`` and ``.<id>.<ext...>``
    (an interrupted write's temporary file) grouped by id; other names are left alone."""
    pattern = re.compile(rf"\.?(\d{{13}}-{re.escape(stream)}{_ID_TAIL})\..+")
    grouped: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(directory / stream))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is not None and entry.is_file(follow_symlinks=False):
            grouped.setdefault(match.group(1), []).append(Path(entry.path))
    return [_Object((str(directory), stream, start_id), tuple(sorted(files)))
            for start_id, files in sorted(grouped.items())]


def _walk(directories: Sequence[Path], resume: tuple[str, str, str] | None) -> Iterator[_Object]:
    for directory in sorted(set(directories), key=str):
        if resume is not None and str(directory) < resume[0]:
            continue
        try:
            streams = sorted(entry.name for entry in os.scandir(directory)
                             if entry.is_dir(follow_symlinks=False) and NAME.fullmatch(entry.name))
        except OSError:
            continue
        for stream in streams:
            if resume is not None and (str(directory), stream) < resume[:2]:
                continue
            for found in _objects_of(directory, stream):
                if resume is None or found.key > resume:
                    yield found


def sweep(history: KeptEvents, directories: Sequence[Path], max_age_days: float | None, *,
          resume: tuple[str, str, str] | None = None, max_objects: int = DEFAULT_MAX_OBJECTS,
          grace_s: float = DEFAULT_GRACE_S, now: float | None = None) -> Swept:
    """Deletes the media of objects the history no longer keeps; at most ``max_objects`` looked at.

    An object's files (``<start id>.*`` in a stream directory) go when its ``object.start`` event is not
    in ``history`` or its start time (from the id; the files' time for other ids) is more than
    ``max_age_days`` ago. Files changed within the last ``grace_s`` are kept whatever the history says:
    an object may end, and its media be written, before the history's writer commits its start.
    Objects are visited in (directory, stream, start id) order from ``resume``; the work of one call is
    one listing of the stream directories it enters, one history query per 500 ids and the deletions.

    Args:
        history: The history (``EventStore.reader``, or an ``EventReader``).
        directories: The snapshots' and the clips' directories.
        max_age_days: The history's age limit (``None``: no limit by age).
        resume: The ``resume`` of the previous call's answer.
        max_objects: Objects looked at in this call, at most.
        grace_s: Files this recent are kept.
        now: Epoch seconds now (default: the clock).

    Raises:
        EventStoreError: the history cannot be read (nothing is deleted then).
    """
    if max_objects < 1:
        raise ValueError(f"max_objects must be at least 1, not {max_objects!r}")
    now = time.time() if now is None else now
    batch: list[_Object] = []
    for found in _walk(directories, resume):
        batch.append(found)
        if len(batch) >= max_objects:
            break
    kept = history.existing([found.key[2] for found in batch]) if batch else set()
    oldest = None if max_age_days is None else now - max_age_days * 86400.0
    deleted_objects = deleted_files = 0
    for found in batch:
        times = []
        for path in found.files:
            try:
                times.append(path.stat().st_mtime)
            except OSError:  # deleted meanwhile
                continue
        if not times or now - max(times) < grace_s:
            continue
        started = _start_time(found.key[2])
        started = min(times) if started is None else started
        if found.key[2] in kept and (oldest is None or started >= oldest):
            continue
        removed = 0
        for path in found.files:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as error:
                log.error("media retention: %s not deleted: %s", path, error.strerror or error)
        deleted_files += removed
        deleted_objects += 1 if removed else 0
    if deleted_objects:
        log.info("media retention: deleted the files of %d objects (%d files)", deleted_objects, deleted_files)
    following = batch[-1].key if len(batch) >= max_objects else None
    return Swept(len(batch), deleted_objects, deleted_files, following)


class Sweeper:
    """Runs :func:`sweep` on its own thread every ``interval_s``, resuming where the last call stopped,
    so the media share the history's retention without any call doing unbounded work.

    Args:
        history: The history's reader.
        directories: The snapshots' and the clips' directories.
        max_age_days: The history's age limit.
        interval_s: Seconds between two calls.
    """

    def __init__(self, history: KeptEvents, directories: Sequence[Path], max_age_days: float | None,
                 interval_s: float = 60.0) -> None:
        self._history = history
        self._directories = tuple(directories)
        self._max_age_days = max_age_days
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="media-sweeper", daemon=True)
        self.deleted_objects = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        resume: tuple[str, str, str] | None = None
        while not self._stop.wait(self._interval_s):
            try:
                swept = sweep(self._history, self._directories, self._max_age_days, resume=resume)
            except Exception as error:  # the history unreadable for a while: try again next time
                log.warning("media retention: %s", error)
                continue
            self.deleted_objects += swept.deleted_objects
            resume = swept.resume
