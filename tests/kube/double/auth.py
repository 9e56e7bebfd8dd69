"""Bearer tokens the double knows, for TokenReview (``authentication.k8s.io/v1``).

Tests register tokens (``KubeApiDouble.add_token``) or mint ServiceAccount tokens through the
``serviceaccounts/{name}/token`` subresource (TokenRequest); a TokenReview answers with the
user they map to, or ``authenticated: false`` as the API server does for unknown tokens. The
double itself does not authenticate its callers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)
    audiences: tuple[str, ...] = ()
    """Audiences the token is valid for; empty means the API server's own."""

    def as_status_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            user["uid"] = self.uid
        if self.extra:
            user["extra"] = {k: list(v) for k, v in self.extra.items()}
        return user


API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


@dataclass
class TokenBook:
    _tokens: dict[str, UserInfo] = field(default_factory=dict)

    def add(self, token: str, user: UserInfo) -> None:
        self._tokens[token] = user

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)

    def user_of(self, token: str) -> UserInfo | None:
        return self._tokens.get(token)

    def mint_service_account(
        self, namespace: str, name: str, uid: str, audiences: list[str]
    ) -> str:
        token = "sa." + secrets.token_urlsafe(24)
        groups = (
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        )
        user = UserInfo(
            f"system:serviceaccount:{namespace}:{name}", uid, groups, audiences=tuple(audiences)
        )
        self.add(token, user)
        return token

    def review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The ``status`` of a TokenReview with this ``spec``."""
        token = spec.get("token") or ""
        wanted = list(spec.get("audiences") or [])
        user = self._tokens.get(token)
        if user is None:
            return {
                "authenticated": False,
                "user": {},
                "error": "[invalid bearer token, token lookup failed]",
            }
        valid_for = list(user.audiences) or [API_AUDIENCE]
        audiences = [a for a in wanted if a in valid_for] if wanted else valid_for
        if wanted and not audiences:
            return {
                "authenticated": False,
                "user": {},
                "error": "[invalid bearer token, token audiences is invalid]",
            }
        return {"authenticated": True, "user": user.as_status_user(), "audiences": audiences}
