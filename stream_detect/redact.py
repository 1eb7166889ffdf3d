"""Removing credentials from text that may carry a URL or a token.

Three kinds of credentials are replaced by ``***``:

* a URL's user information (``rtsp://admin:p@ss@cam/x`` -> ``rtsp://***@cam/x``).
  It ends, as FFmpeg and :func:`urllib.parse.urlsplit` read it, at the *last*
  ``@`` before the host's first ``/``, ``?`` or ``#``; in free text also
  before whitespace or a quote, so a password containing ``@`` goes whole;
* the values of query (or fragment) parameters whose name says they carry a
  secret (``pwd``, ``apikey``, ``X-Amz-Signature``, ``access_token``, ...),
  whatever the name's case or percent-encoding;
* literal values registered with :func:`register_secret` (API tokens), raw
  and percent-encoded.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

# A scheme is short: bounding it keeps the scan linear on long runs of letters.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<userinfo>[^/?#\s'\"]*)@")
_PARAMETER = re.compile(r"(?P<lead>[?&;#](?P<name>[^=&;#?\s'\"]+)=)(?P<value>[^&\s'\"#]+)")
# Parameter names (lower case, '-' read as '_') whose values are secrets.
_SECRET_NAME = re.compile(
    r"pw|pwd|pass|passwd|password|passphrase|authorization|jwt|session|sessionid|sid|key|sig"
    r"|.*(?:token|secret|password|passwd|signature|credential|api_?key|_key|_sig|auth)s?"
)

_secrets_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(secret: str) -> None:
    """Adds a literal value (an API token, a password) that :func:`redact` removes."""
    if len(secret) < 4:
        return
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    global _secrets
    with _secrets_lock:
        # Longest first: a secret that contains another must not be left half replaced.
        _secrets = tuple(sorted(set(_secrets) | forms, key=len, reverse=True))


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or setting called ``name`` holds a credential."""
    return _SECRET_NAME.fullmatch(unquote(name).lower().replace("-", "_")) is not None


def redact_url(url: str) -> str:
    """Returns ``url`` with its user name, password and secret query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if "@" not in parts.netloc:
        return redact(url)
    host = parts.netloc.rpartition("@")[2]
    return redact(urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)))


def _parameter(match: re.Match[str]) -> str:
    return match["lead"] + "***" if is_secret_name(match["name"]) else match[0]


def redact(text: str) -> str:
    """Replaces credentials in URLs, secret query parameters and registered
    secrets (raw and percent-encoded) in free text."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _PARAMETER.sub(_parameter, text)
    with _secrets_lock:
        secrets = _secrets
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
