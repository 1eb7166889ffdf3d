"""The Host header check (DNS rebinding), as a table."""

from __future__ import annotations

import pytest

from stream_detect.config import ServerConfig
from stream_detect.server.hosts import HostCheck, host_name


@pytest.mark.parametrize(("header", "name"), [
    ("localhost:8000", "localhost"),
    ("LocalHost", "localhost"),
    ("localhost.:8000", "localhost"),
    ("127.0.0.1", "127.0.0.1"),
    ("[::1]:8000", "::1"),
    ("[::1]", "::1"),
    ("[::1", None),
    ("[::1]x", None),
    ("[::1]:80a", None),
    ("cam.example:port", None),
    (":8000", None),
    ("", None),
])
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(("config", "header", "allowed"), [
    ({}, "localhost:8000", True),
    ({}, "127.0.0.1:8000", True),
    ({}, "[::1]:8000", True),
    ({}, None, True),  # no Host: not a browser
    ({}, "attacker.example:8000", False),
    ({}, "localhost.attacker.example", False),
    ({}, "10.0.0.5:8000", False),  # bound to loopback: no other address reaches it
    ({"host": "192.168.1.20"}, "192.168.1.20:8000", True),
    ({"host": "0.0.0.0"}, "10.0.0.5:8000", True),  # every interface: address literals cannot be rebound
    ({"host": "0.0.0.0"}, "[fe80::1]:8000", True),
    ({"host": "0.0.0.0"}, "attacker.example", False),
    ({"allowed_hosts": ["Cameras.Example.org"]}, "cameras.example.org:443", True),
    ({"public_url": "https://nvr.example.net:8443/sd/"}, "nvr.example.net", True),
    ({"allowed_hosts": ["*"]}, "anything.example", True),
])
def test_host_check(config: dict, header: str | None, allowed: bool) -> None:
    assert HostCheck.for_server(ServerConfig(**config)).allows(header) is allowed
