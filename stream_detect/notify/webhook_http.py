"""One webhook POST over the standard library's :mod:`http.client`, abortable from another thread.

``http.client`` never follows redirects, sends no proxy or environment
settings of its own, and speaks HTTP/1.1 over TLS with the system's
certificate store (``ssl.create_default_context``): what a signed delivery
wants, with no dependency. ``timeout_s`` bounds the connection and each
read; a new connection is made per attempt (deliveries are rare and the
receiver may have restarted). User information in the URL
(``https://user:pass@host/``) becomes a Basic ``authorization`` header.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..redact import redact

MAX_ANSWER_CHARS = 200


@dataclass(frozen=True)
class Answer:
    """What the receiver answered: status, ``Retry-After``, ``Location``, and the start of its body."""

    status: int
    retry_after: str | None
    location: str | None
    text: str


class Aborted(Exception):
    """The attempt was cut short by :meth:`Poster.abort` (the sink is closing)."""


class Poster:
    """POSTs to one URL; :meth:`abort` cuts an attempt in flight short from another thread."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._authorization: str | None = None
        if parts.username is not None:
            user_password = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._authorization = "Basic " + base64.b64encode(user_password.encode()).decode()
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context() if self._https else None
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._aborted = False

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One POST of ``body``.

        Raises:
            OSError: connecting, sending or reading failed or timed out (``ssl.SSLError`` included).
            http.client.HTTPException: the answer is not HTTP.
            Aborted: :meth:`abort` was called.
        """
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                                     context=self._context)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        with self._lock:
            if self._aborted:
                raise Aborted
            self._connection = connection
        sent = dict(headers, **({"authorization": self._authorization} if self._authorization else {}))
        try:
            connection.connect()
            with self._lock:  # an abort() while connecting found no socket to shut down: it is seen here
                if self._aborted:
                    raise Aborted
            connection.request("POST", self._target, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read(4096).decode("utf-8", errors="replace")
            return Answer(response.status, response.getheader("retry-after"), response.getheader("location"),
                          text[:MAX_ANSWER_CHARS])
        except (OSError, http.client.HTTPException):
            if self._aborted:
                raise Aborted from None
            raise
        finally:
            with self._lock:
                self._connection = None
            connection.close()

    def abort(self) -> None:
        """Cuts the attempt in flight short (its ``post`` raises :class:`Aborted`) and refuses new ones."""
        with self._lock:
            self._aborted = True
            connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # already closed
                connection.sock.shutdown(socket.SHUT_RDWR)


def describe_error(error: BaseException) -> str:
    """An attempt's failure as one line, without credentials."""
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    text = str(error) or type(error).__name__
    return redact(f"{type(error).__name__}: {text}")[:MAX_ANSWER_CHARS]
