"""One webhook's settings: where events are POSTed, the signing secret, which events, how long to retry.

A pure pydantic model with no I/O, so that :mod:`stream_detect.config` can
hold ``webhooks: list[WebhookConfig]``. The secret is a :class:`SecretStr`:
its repr, ``str`` and JSON dump are ``**********``, and no validation message
of this module contains it, nor does pydantic's error text (the secret is
wrapped before validation), nor the configuration loader's line (keys named
like ``secret`` are shown as ``***``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..events.envelope import KINDS

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16  # the specification recommends 24 to 64 random bytes; 128 bits is the floor here
MAX_SECRET_BYTES = 256


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``, decoded.

    Raises:
        ValueError: not ``whsec_`` and base64 of 16 to 256 bytes (the message never contains the secret).
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX!r} followed by base64 "
                         "(e.g. from: python -c \"import base64, os; print('whsec_' + "
                         "base64.b64encode(os.urandom(32)).decode())\")")
    encoded = secret[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secret after {SECRET_PREFIX!r} must be standard base64 (A-Z, a-z, 0-9, +, /)") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"secret must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)} "
                         "(the specification recommends 24 to 64 random bytes)")
    return key


class WebhookConfig(BaseModel):
    """Events POSTed to one URL, signed per the Standard Webhooks specification, retried until delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="http:// or https:// URL the events are POSTed to; redirects are not followed.")
    secret: SecretStr = Field(description="Signing secret, 'whsec_' and base64 of 16 to 256 random bytes.")
    kinds: list[str] | None = Field(None, min_length=1, description=f"Only these event kinds ({', '.join(KINDS)}).")
    streams: list[str] | None = Field(None, min_length=1, description="Only events of these stream ids.")
    labels: list[str] | None = Field(None, min_length=1, description="Only events of these object labels.")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Longest wait to connect and for each read.")
    max_age_h: float = Field(24.0, gt=0, le=24 * 30, description="Retry an undelivered event for this long.")

    @model_validator(mode="before")
    @classmethod
    def _hide_secret(cls, data: Any) -> Any:
        # Wrapped before validation: an error's input is then SecretStr('**********'), also when this model
        # is validated inside another one (hide_input_in_errors only applies to errors raised here at the top).
        if isinstance(data, dict) and isinstance(data.get("secret"), str):
            return {**data, "secret": SecretStr(data["secret"])}
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("url must be an http:// or https:// URL with a host and a valid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if port == 0 or any(c in value for c in "\r\n\t "):
            raise ValueError("url must have a port from 1 to 65535 and no white space")
        if parts.fragment:
            raise ValueError("url must not have a #fragment (it is never sent)")
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        secret_key(value.get_secret_value())
        return value

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str] | None) -> list[str] | None:
        for kind in value or ():
            if kind not in KINDS:
                raise ValueError(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
        return value

    @property
    def key(self) -> bytes:
        """The HMAC key (the secret's base64, decoded)."""
        return secret_key(self.secret.get_secret_value())

    @property
    def max_age_s(self) -> float:
        return self.max_age_h * 3600.0
