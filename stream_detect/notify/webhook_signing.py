"""Standard Webhooks signing (pure): the ids and headers of one delivery attempt.

The specification: each message has an id, the same over every attempt so
a receiver can de-duplicate; each attempt carries the time it was sent
(``webhook-timestamp``, epoch seconds; receivers refuse times more than
five minutes off, so it is taken at each attempt, never stored) and
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``,
``key`` being the base64 after ``whsec_``, decoded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def hook_key(url: str) -> str:
    """A webhook's name in the outbox: 16 hex digits of the SHA-256 of its URL.

    The URL itself (which may hold credentials) is not kept; a webhook whose URL
    changes is another webhook.
    """
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def webhook_id(event_id: str, hook: str) -> str:
    """The ``webhook-id`` of an event's delivery to the webhook ``hook`` (see :func:`hook_key`).

    Derived, not drawn: the same event and webhook always give the same id, on
    every attempt and after a restart. ``msg_`` and 32 hex digits, whatever the
    event id holds, so it is always a valid header value.
    """
    digest = hashlib.sha256(f"{hook}\n{event_id}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{message_id}.{timestamp}.{body}``."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the three Standard Webhooks headers and the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }
