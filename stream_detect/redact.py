"""Removing credentials from text that may carry a URL or a token."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]*)@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|access_token|auth|password|passwd|key)=)[^&\s'\"]+")

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Adds a literal value (an API token, a password) that :func:`redact` removes."""
    if len(secret) >= 4:
        with _secrets_lock:
            _secrets.add(secret)


def redact_url(url: str) -> str:
    """Returns ``url`` with its user name, password and secret query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is None and parts.password is None:
        return redact(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return redact(urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)))


def redact(text: str) -> str:
    """Replaces credentials in URLs, secret query parameters and registered
    secrets (raw and percent-encoded) in free text."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    with _secrets_lock:
        secrets = tuple(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
