"""The MQTT sink's settings: which broker, as whom, under which topics, how much to hold while it is away.

A pure pydantic model with no I/O, so that :mod:`stream_detect.config` can
hold ``mqtt: MqttConfig | None``. The password is a :class:`SecretStr`: its
repr, ``str`` and JSON dump are ``**********``, and no validation message of
this module contains it (the configuration loader also shows keys named like
``password`` as ``***``).
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TOPIC_FORBIDDEN = ("+", "#", "\x00")


def _check_prefix(value: str, what: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"{what} must be topic levels separated by single '/', without a leading or trailing '/'")
    if any(c in value for c in TOPIC_FORBIDDEN) or value.startswith("$"):
        raise ValueError(f"{what} must not contain '+', '#' or NUL, nor start with '$' (broker-reserved)")
    if len(value.encode()) > 256:
        raise ValueError(f"{what} must be at most 256 bytes")
    return value


class MqttConfig(BaseModel):
    """Events, counts and snapshots published to an MQTT broker, announced to Home Assistant."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(description="The broker's host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port (8883 is usual with TLS).")
    username: str | None = Field(None, min_length=1, max_length=256, description="User name at the broker.")
    password: SecretStr | None = Field(None, description="Password at the broker; never shown.")
    tls: bool = Field(False, description="Connect with TLS, checking the broker's certificate.")
    ca_file: str | None = Field(
        None, min_length=1, description="With tls: PEM file of the CAs to trust (default: the system's)."
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="MQTT client id; default 'stream-detect-<hostname>'. Two clients with one id push each "
                    "other off the broker: give each analyzer its own.",
    )
    topic_prefix: str = Field("stream-detect", description="First topic levels of everything published.")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's MQTT discovery prefix.")
    discovery: bool = Field(True, description="Announce each stream as a Home Assistant device.")
    qos_events: Literal[0, 1, 2] = Field(
        1, description="QoS of <prefix>/events; 1 and 2 are kept while the broker is away, 0 is not."
    )
    max_pending: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Event messages held at most while the broker is away or slow; newer ones are dropped, counted.",
    )
    keepalive_s: int = Field(
        30, ge=5, le=3600, description="MQTT keepalive; the broker publishes the will 1.5 keepalives after "
                                       "it last heard from a silent connection.",
    )
    reconnect_max_s: int = Field(
        30, ge=1, le=3600, description="Waits between attempts to reach the broker double from 1 s up to this."
    )

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not value or "://" in value or any(c.isspace() or c in "/@" for c in value):
            raise ValueError("host must be a host name or address, without scheme, user, port or path")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        return _check_prefix(value, "topic_prefix")

    @field_validator("discovery_prefix")
    @classmethod
    def _check_discovery_prefix(cls, value: str) -> str:
        return _check_prefix(value, "discovery_prefix")

    @field_validator("client_id")
    @classmethod
    def _check_client_id(cls, value: str | None) -> str | None:
        if value is not None and any(not c.isprintable() for c in value):
            raise ValueError("client_id must be printable characters")
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> MqttConfig:
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is given but tls is false; set tls: true to use it")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    def effective_client_id(self) -> str:
        """:attr:`client_id`, or ``stream-detect-<hostname>``."""
        return self.client_id or f"stream-detect-{socket.gethostname()}"
