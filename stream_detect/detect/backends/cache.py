"""Converted models kept on disk, so that only the first start pays for a conversion.

OpenVINO's conversion of DETR-R50 takes 10-13 s on a 2-core machine, an ONNX
export about as long; reading the converted files back takes 0.05 s. An
entry is a directory named by the digest of its :class:`CacheKey` (what the
model is, which backend, the input size the export was traced at, and the
versions of every library that shapes the result), holding the converted
files and a manifest with each file's size and SHA-256. Precision is not
part of the key: the converted model is fp32 and the precision is chosen
when it is compiled (OpenVINO keeps its compiled blobs, per precision, in
the entry's ``compiled/`` directory).

- Two processes starting at once: the second waits on the entry's lock
  (``flock``) while the first converts, then reads what it wrote. Files a
  runtime writes beside an entry as it uses it (OpenVINO's compiled blobs,
  written in place, not renamed) are written under :meth:`ConversionCache.using`,
  a second lock, so that no process reads a blob another is still writing.
- An entry is built in a staging directory and published by one rename, so
  a crash mid-conversion leaves no half entry behind.
- An entry whose files do not match its manifest, or that its backend
  cannot read, is removed and built again, with one warning line.

The cache lives in ``$STREAM_DETECT_CACHE`` or, by default, beside the
models in the Hugging Face cache (``$HF_HOME/stream-detect/converted``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import orjson

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_ENV = "STREAM_DETECT_CACHE"
# Bumped when the layout of an entry or the way models are converted changes.
FORMAT = 1
MANIFEST = "manifest.json"
_RESULT = "result.json"
VERSIONED = ("stream-detect", "torch", "transformers", "openvino", "onnxruntime", "onnx")


def default_root() -> Path:
    """``$STREAM_DETECT_CACHE``, else ``$HF_HOME/stream-detect/converted`` (``~/.cache/huggingface/...``)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME).expanduser() / "stream-detect" / "converted"


def library_versions(names: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    """The installed version of each of ``names`` (absent ones left out)."""
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass(frozen=True)
class CacheKey:
    """What a converted model depends on.

    Attributes:
        model: the model's fingerprint: ``HUB_ID@COMMIT``, or ``sha256:...`` of a local directory's files.
        backend: ``openvino``, ``onnx``, ...
        input_size: ``(height, width)`` the export was traced at, when the model takes one fixed size.
        versions: library versions (:func:`library_versions`).
    """

    model: str
    backend: str
    input_size: tuple[int, int] | None = None
    versions: dict[str, str] = field(default_factory=library_versions)

    def digest(self) -> str:
        payload = {"format": FORMAT, **asdict(self)}
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class CorruptEntry(Exception):
    """An entry's files do not match its manifest, or its backend cannot read them."""


@dataclass(frozen=True)
class ConversionCache:
    """A directory of converted models, one entry per :class:`CacheKey`."""

    root: Path = field(default_factory=default_root)

    def entry(self, key: CacheKey) -> Path:
        return self.root / key.digest()

    def load_or_build(self, key: CacheKey, build: Callable[[Path], None], load: Callable[[Path], T],
                      what: str = "the converted model") -> T:
        """``load(entry)`` of the entry for ``key``, after ``build(staging)`` has made it if it was missing.

        ``build`` writes the converted files into the directory it is given;
        ``load`` reads them (raising :class:`CorruptEntry`, or its backend's
        own error, when it cannot). An entry that fails its manifest or
        ``load`` is rebuilt once, with a warning.
        """
        entry = self.entry(key)
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f"{entry.name}.lock"):
            if (entry / MANIFEST).exists():
                started = time.perf_counter()
                try:
                    _verify(entry)
                    loaded = load(entry)
                except Exception as error:  # a backend reading a damaged file raises many kinds
                    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    log.warning("cache entry %s (%s) is damaged (%s); making it again", entry, what, reason)
                    _discard(entry)
                else:
                    log.info("read %s from the cache (%s) in %.2f s", what, entry, time.perf_counter() - started)
                    return loaded
            elif entry.exists():
                _discard(entry)  # no manifest: not an entry this code published
            _build(entry, key, build)
            return load(entry)

    def remember(self, key: CacheKey, compute: Callable[[], dict[str, Any]], what: str) -> tuple[dict[str, Any], bool]:
        """A small JSON result (a check's verdict) kept like a conversion: ``compute()`` once per ``key``,
        read back afterwards. Returns the result and whether it was read from the cache."""
        computed: list[bool] = []

        def build(directory: Path) -> None:
            (directory / _RESULT).write_bytes(orjson.dumps(compute()))
            computed.append(True)

        result = self.load_or_build(key, build, _read_result, what)
        return result, not computed

    def recall(self, key: CacheKey, what: str) -> dict[str, Any] | None:
        """The result :meth:`remember` kept for ``key``, or None when there is none to trust (missing or
        damaged: :meth:`remember` then computes it again, and warns about a damaged one)."""
        entry = self.entry(key)
        if not (entry / MANIFEST).exists():
            return None
        with _locked(self.root / f"{entry.name}.lock"):
            try:
                _verify(entry)
                result = _read_result(entry)
            except Exception:  # whatever is wrong, remember() says so as it rebuilds the entry
                return None
        log.info("read %s from the cache (%s)", what, entry)
        return result

    @contextlib.contextmanager
    def using(self, key: CacheKey) -> Iterator[Path]:
        """The entry for ``key``, with other processes kept out of it for the block: for a runtime
        that writes its own files into the entry (compiled blobs) as it loads the model."""
        entry = self.entry(key)
        with _locked(self.root / f"{entry.name}.use.lock"):
            yield entry


def _read_result(entry: Path) -> dict[str, Any]:
    result = orjson.loads((entry / _RESULT).read_bytes())
    if not isinstance(result, dict):
        raise CorruptEntry(f"{_RESULT} holds no object")
    return result


def _build(entry: Path, key: CacheKey, build: Callable[[Path], None]) -> None:
    staging = entry.with_name(f".{entry.name}.{os.getpid()}.{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        build(staging)
        files = {path.name: _describe(path) for path in sorted(staging.iterdir()) if path.is_file()}
        manifest = {"format": FORMAT, "key": asdict(key), "files": files}
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _fsync_files(staging)
        os.rename(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _verify(entry: Path) -> None:
    try:
        manifest = orjson.loads((entry / MANIFEST).read_bytes())
        files = manifest["files"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise CorruptEntry(f"unreadable manifest: {error}") from None
    if manifest.get("format") != FORMAT:
        raise CorruptEntry(f"format {manifest.get('format')!r}, not {FORMAT}")
    for name, expected in files.items():
        path = entry / name
        if not path.is_file():
            raise CorruptEntry(f"{name} is missing")
        if path.stat().st_size != expected["size"]:
            raise CorruptEntry(f"{name} has {path.stat().st_size} bytes, not {expected['size']}")
        if _sha256(path) != expected["sha256"]:
            raise CorruptEntry(f"{name} does not match its checksum")


def _describe(path: Path) -> dict[str, object]:
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_files(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())


def _discard(entry: Path) -> None:
    trash = entry.with_name(f".trash-{entry.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(entry, trash)
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` for the block (none where ``fcntl`` is missing: Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a+b") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


__all__ = ["CACHE_ENV", "VERSIONED", "CacheKey", "ConversionCache", "CorruptEntry", "default_root", "library_versions"]
