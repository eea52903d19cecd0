"""Bearer tokens with scopes (ingest, read, admin), optionally limited to stores."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import NamedTuple

from milepost.config import Token


class AuthError(Exception):
    """A request without a valid token (401) or with one lacking the scope (403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Principal(NamedTuple):
    """Who is asking: the token's name and the stores it may see (empty: every store)."""

    name: str
    stores: tuple[str, ...]


OPEN = Principal("anonymous", ())


class Authenticator:
    """Checks ``Authorization: Bearer <token>``; with no token configured, everyone is allowed.

    The node refuses to listen beyond loopback when no token is configured, so "everyone"
    means processes on this machine.
    """

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self._by_hash = {token.sha256: token for token in tokens}

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def check(self, authorization: str | None, scope: str) -> Principal:
        if not self._by_hash:
            return OPEN
        if not authorization:
            raise AuthError(401, "A bearer token is required: send 'Authorization: Bearer <token>'.")
        kind, _, presented = authorization.partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            raise AuthError(401, "The Authorization header must be 'Bearer <token>'.")
        token = self._by_hash.get(hashlib.sha256(presented.strip().encode()).hexdigest())
        if token is None:
            raise AuthError(401, "The bearer token is not valid.")
        if scope not in token.scopes and "admin" not in token.scopes:
            raise AuthError(403, f"Token '{token.name}' lacks the '{scope}' scope.")
        return Principal(token.name, token.stores)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
