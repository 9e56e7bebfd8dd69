"""Who may call a shim: the platform's gateways, proven by a per-version token (pure).

A shim's gRPC port is reachable by whatever can route to it: on Kubernetes a pod in any
namespace when NetworkPolicy is not enforced, under ``klambda up`` any local process. So every
call carries a bearer token, and the shim checks it in constant time before anything else.

Tokens are derived, per version, from one platform key that only the gateways and the
operator (or ``klambda up``) hold: ``HMAC-SHA256(key, namespace/function/version)``. A shim
knows only its own token, so code running beside it (its function, which can read its shim's
settings) learns nothing that opens another function's shim.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

TOKEN_HEADER = "authorization"
"""The gRPC metadata key carrying ``Bearer <token>``."""
KEY_BYTES = 32


def caller_token(key: bytes, namespace: str, function: str, version: str) -> str:
    """The token that opens the shim of one function version."""
    message = f"{namespace}\0{function}\0{version}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((TOKEN_HEADER, f"Bearer {token}"),)


def authorized(expected: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether ``metadata`` carries ``expected`` (compared in constant time)."""
    presented = ""
    for name, value in metadata or ():
        if name == TOKEN_HEADER and isinstance(value, str):
            presented = value.removeprefix("Bearer ")
    return matches(expected, presented)


def matches(expected: str, presented: str) -> bool:
    """Whether a presented token is the expected one, compared in constant time."""
    return hmac.compare_digest(presented.encode(), expected.encode())
