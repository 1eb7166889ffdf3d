"""Errors raised by stream-detect.

Every error is a :class:`StreamDetectError` and also subclasses the built-in
exception a caller would naturally catch, so ``except ValueError`` keeps
working for code that does not know this package::

    StreamDetectError(Exception)
    ├── ConfigError(StreamDetectError, ValueError)       bad YAML, key or value
    ├── SourceError(StreamDetectError, OSError)          a source cannot open or read
    │   ├── SourceOpenError                              open failed or timed out
    │   └── SourceEndedError(SourceError, EOFError)      stream ended (EOF or disconnect)
    ├── StreamExistsError(StreamDetectError, ValueError) a stream with that id runs already
    ├── UnknownStreamError(StreamDetectError, KeyError)  no stream has that id
    ├── ModelError(StreamDetectError, RuntimeError)      model cannot load or run
    │   └── ModelNotReadyError                           model is still loading
    ├── EventStoreError(StreamDetectError, RuntimeError) the event database cannot be used
    └── InputError(StreamDetectError, ValueError)        an image given to the API is bad
        ├── ImageTooLargeError                           pixel or byte limit exceeded
        └── UnsupportedMediaError                        not an allowed image format

Messages name the offending value and never contain credentials: anything
that may carry a URL goes through :func:`stream_detect.redact.redact_url`
before it reaches a message.
"""

from __future__ import annotations


class StreamDetectError(Exception):
    """Base class of every error raised by stream-detect."""


class ConfigError(StreamDetectError, ValueError):
    """The configuration (file or command line) is invalid."""


class SourceError(StreamDetectError, OSError):
    """A video source could not be opened or read."""


class SourceOpenError(SourceError):
    """Opening a source failed or timed out."""


class SourceEndedError(SourceError, EOFError):
    """A source reached its end: end of file, or a live stream that disconnected."""


class StreamExistsError(StreamDetectError, ValueError):
    """A stream with that id runs already."""


class UnknownStreamError(StreamDetectError, KeyError):
    """No stream has that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(StreamDetectError, RuntimeError):
    """A model could not be loaded or run."""


class ModelNotReadyError(ModelError):
    """The model is still loading."""

    def __init__(self, message: str, estimated_time: float) -> None:
        super().__init__(message)
        self.estimated_time = estimated_time


class InputError(StreamDetectError, ValueError):
    """An input image or request is malformed."""


class ImageTooLargeError(InputError):
    """An image exceeds the configured byte or pixel limit."""


class UnsupportedMediaError(InputError):
    """The input is not an image in an allowed format."""


class EventStoreError(StreamDetectError, RuntimeError):
    """The event history cannot be used: its database is corrupt, from a newer stream-detect,
    held by another process, or the store is closed."""
