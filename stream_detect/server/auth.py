"""Bearer-token checks, shared by HTTP routes and the websocket."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping


class TokenCheck:
    """Accepts a request when no tokens are configured or one of them is presented.

    Tokens are compared in constant time. Browsers cannot set headers on a
    websocket, so they may present the token as ``?token=`` or as a
    websocket subprotocol ``bearer.<token>``.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens if token)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def matches(self, presented: str | None) -> bool:
        if not self._tokens:
            return True
        if not presented:
            return False
        candidate = presented.encode()
        found = False
        for token in self._tokens:  # no early exit: time does not tell which token matched
            found |= hmac.compare_digest(candidate, token)
        return found

    def allows(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        return self.matches(presented_token(headers, query))


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request carries: header, ``token`` query value, or subprotocol."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query.get("token"):
        return query["token"]
    for protocol in headers.get("sec-websocket-protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith("bearer."):
            return protocol.removeprefix("bearer.")
    return None
