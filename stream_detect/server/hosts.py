"""The Host header check that defeats DNS rebinding.

A web page on ``attacker.example`` can make its own name resolve to
127.0.0.1 and then read this server as same-origin: the browser sends
``Host: attacker.example`` (and an ``Origin`` of the same name, so comparing
Origin with Host proves nothing). Without tokens, the default, any page a
user opens could then watch the cameras. Requests must therefore name this
server: ``localhost``, ``127.0.0.1``, ``[::1]``, the bind address,
``server.public_url``'s host, or one of ``server.allowed_hosts`` (``*``
accepts any). A server bound to every interface (``0.0.0.0``, ``::``) is
reached by addresses it cannot list, so it also accepts IP-address hosts and
the machine's own name: rebinding needs a name, never an address literal.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..config import ServerConfig

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header, lower-cased, without port or IPv6 brackets; None if malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Decides which ``Host`` header values the server answers."""

    def __init__(self, names: Iterable[str], *, any_host: bool = False, ip_literals: bool = False) -> None:
        self.names = frozenset(name.strip("[]").lower().rstrip(".") for name in names)
        self.any_host = any_host
        self.ip_literals = ip_literals

    @classmethod
    def for_server(cls, config: ServerConfig) -> HostCheck:
        names = {*LOOPBACK_NAMES, config.host.strip("[]").lower(), *config.allowed_hosts}
        if config.public_url:
            names.add((urlsplit(config.public_url).hostname or "").lower())
        wildcard = config.host.strip("[]") in WILDCARD_BINDS
        if wildcard:
            machine = socket.gethostname().lower()
            names.update({machine, f"{machine}.local"})
        return cls(names - {""}, any_host="*" in config.allowed_hosts, ip_literals=wildcard)

    def allows(self, header: str | None) -> bool:
        """Whether a request carrying ``Host: header`` is answered. No header: not a browser, allowed."""
        if self.any_host or header is None:
            return True
        name = host_name(header)
        if name is None:
            return False
        return name in self.names or (self.ip_literals and _is_ip(name))
