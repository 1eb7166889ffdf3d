"""Where cameras changed at run time are kept, so they survive a restart.

With ``--config FILE`` the file itself is rewritten: its ``sources:`` list is
edited in place with a round-trip YAML library (ruamel.yaml), so comments,
key order and the untouched entries stay as the user wrote them. Without a
file, the changes go to ``streams.yaml`` in the data directory, as what was
added and what was removed on top of the command line's sources, and are
applied at the next start.

Every write is atomic: a temporary file beside the target, flushed and
fsynced, then renamed over it (and the directory fsynced), so a crash at any
moment leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from .config import SourceConfig, parse_source
from .errors import ConfigError

STATE_FILE = "streams.yaml"


def entry_of(source: SourceConfig) -> dict[str, Any]:
    """A source as the configuration entry a user would write: the keys that were given,
    ``id`` and ``kind`` first, whole numbers without a decimal point."""
    data: dict[str, Any] = source.model_dump(mode="json", exclude_unset=True)
    data.pop("id", None)
    data.pop("kind", None)
    return {"id": source.id, "kind": source.kind, **{key: _plain(value) for key, value in data.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _mapping_indent(text: str) -> int:
    """The indentation of the first nested mapping key of ``text`` (2 when there is none)."""
    parent = False
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if parent and indent > 0 and not stripped.startswith("- "):
            return indent
        parent = indent == 0 and stripped.rstrip().endswith(":")
    return 2


def write_atomically(path: Path, text: str) -> None:
    """Replaces ``path`` with ``text``: the old content or the new, whatever happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):  # keep the user's permissions on their file
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class SourceStore(Protocol):
    """Keeps the running sources after each change."""

    def save(self, sources: list[SourceConfig]) -> None: ...


class ConfigFileStore:
    """Rewrites the ``sources:`` list of the user's configuration file, keeping the rest as written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def save(self, sources: list[SourceConfig]) -> None:
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
            _, sequence_indent, dash_offset = load_yaml_guess_indent(text)
            yaml = YAML()
            yaml.preserve_quotes = True
            yaml.indent(mapping=_mapping_indent(text), sequence=sequence_indent or 2, offset=dash_offset or 0)
            document = yaml.load(text)
            if document is None:
                document = CommentedMap()
            listed = document.get("sources")
            if not isinstance(listed, CommentedSeq):
                listed = CommentedSeq()
                document["sources"] = listed
            _update_in_place(listed, sources)
            buffer = io.StringIO()
            yaml.dump(document, buffer)
            write_atomically(self.path, buffer.getvalue())


def _update_in_place(listed: CommentedSeq, sources: list[SourceConfig]) -> None:
    """Edits the YAML list to hold ``sources``: entries that stay keep their text and comments."""
    wanted = {source.id: source for source in sources}
    for index in reversed(range(len(listed))):
        entry = listed[index]
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        if entry_id not in wanted:
            del listed[index]
            continue
        if _as_source(entry) != wanted[entry_id]:
            listed[index] = CommentedMap(entry_of(wanted[entry_id]))
    present = {entry.get("id") for entry in listed if isinstance(entry, dict)}
    for source in sources:
        if source.id not in present:
            listed.append(CommentedMap(entry_of(source)))


def _as_source(entry: Any) -> SourceConfig | None:
    try:
        return parse_source(dict(entry), origin="config")
    except ConfigError:
        return None


class StateFileStore:
    """Keeps what the API changed on top of the command line's sources, in ``DATA_DIR/streams.yaml``."""

    def __init__(self, data_dir: Path, base: list[SourceConfig]) -> None:
        self.path = data_dir / STATE_FILE
        self.base = {source.id: source for source in base}
        self._lock = threading.Lock()

    def apply(self) -> list[SourceConfig]:
        """The command line's sources with the saved changes applied (what the last run ended with).

        Raises:
            ConfigError: the state file is not what this module writes.
        """
        if not self.path.exists():
            return list(self.base.values())
        try:
            data = YAML(typ="safe").load(self.path.read_text(encoding="utf-8")) or {}
        except Exception as error:
            raise ConfigError(f"{self.path}: cannot read the saved streams: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: expected a mapping with 'added' and 'removed'")
        removed = set(data.get("removed") or [])
        added = [parse_source(entry, origin=str(self.path)) for entry in data.get("added") or []]
        added_ids = {source.id for source in added}
        kept = [source for key, source in self.base.items() if key not in removed and key not in added_ids]
        return kept + added

    def save(self, sources: list[SourceConfig]) -> None:
        current = {source.id: source for source in sources}
        added = [source for key, source in current.items() if self.base.get(key) != source]
        removed = sorted(key for key in self.base if key not in current)
        yaml = YAML()
        buffer = io.StringIO()
        buffer.write("# Cameras added, changed (added again under the same id) and removed through the\n"
                     "# streams API, on top of the command line's sources. Written by stream-detect.\n")
        yaml.dump({"added": [entry_of(source) for source in added], "removed": removed}, buffer)
        with self._lock:
            write_atomically(self.path, buffer.getvalue())
