"""Who is calling (SigV4 against the directory of access keys) and whether they may (policies).

Authentication verifies the signature exactly as AWS does (``klambda.api.sigv4``);
authorization evaluates the caller's identity policies and the function's resource policy by
Lambda's rules (``klambda.api.policy``). Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from klambda.api import sigv4
from klambda.api.arn import AccountIds
from klambda.api.iam import Directory, Principal
from klambda.api.policy import Ask, Caller, Policy, evaluate
from klambda.gateway.errors import AccessDenied, AuthError


@dataclass(frozen=True)
class Identity:
    principal: Principal
    access_key_id: str
    policies: tuple[Policy, ...]

    @property
    def caller(self) -> Caller:
        return Caller(self.principal.arn, self.principal.account, self.principal.namespace)


def signed_request(request: web.Request, body: bytes) -> sigv4.Request:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    path, _, _ = request.raw_path.partition("?")
    return sigv4.Request(request.method, path, request.query_string, headers, body)


POLICY_CACHE_SIZE = 1024
"""Distinct identity-policy sets kept parsed."""


class TokenReviewer(Protocol):
    """Vouches for bearer tokens (Kubernetes ServiceAccount tokens through TokenReview)."""

    async def review(self, token: str) -> Principal | None: ...


class Authenticator:
    def __init__(
        self,
        directory: Directory,
        region: str,
        tokens: TokenReviewer | None = None,
        accounts: AccountIds | None = None,
    ) -> None:
        """``accounts``: the namespaces with functions (the routing table's), to refuse a
        principal whose namespace shares its account id with another."""
        self.directory = directory
        self.region = region
        self.tokens = tokens
        self.accounts = accounts
        self._parsed: OrderedDict[str, tuple[Policy, ...]] = OrderedDict()
        self._by_principal: dict[int, tuple[Principal, str]] = {}

    async def authenticate(
        self, request: web.Request, body: bytes, service: str = sigv4.SERVICE
    ) -> Identity:
        """The caller: a SigV4-signed access key (signed for ``service``), or (in a cluster)
        a ServiceAccount token."""
        auth = request.headers.get("Authorization", "")
        if self.tokens is not None and auth.startswith("Bearer "):
            principal = await self.tokens.review(auth.removeprefix("Bearer ").strip())
            if principal is None:
                raise AuthError(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            return self._identity(principal, "")
        req = signed_request(request, body)
        try:
            signed = sigv4.parse(req)
            found = self.directory.lookup(signed.credential.access_key_id)
            if found is None or "x-amz-security-token" in req.headers:
                raise AuthError(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            key, principal = found
            sigv4.verify(
                req, signed, key.secret_access_key, self.region, datetime.now(UTC), service
            )
        except sigv4.SignatureError as e:
            raise AuthError(e.code, e.message) from None
        return self._identity(principal, key.access_key_id)

    def _identity(self, principal: Principal, access_key_id: str) -> Identity:
        other = self.accounts.collision(principal.namespace) if self.accounts else None
        if other is not None:
            raise AccessDenied(
                f"User: {principal.arn} is refused: the account id {principal.account} of "
                f"namespace {principal.namespace!r} is also namespace {other!r}'s; klambda "
                "refuses both until one is renamed"
            )
        return Identity(principal, access_key_id, self._policies(principal))

    def _policies(self, principal: Principal) -> tuple[Policy, ...]:
        """The principal's identity policies, parsed once per content (keyed by a digest of
        the JSON: a changed policy is a new key at once) in a bounded LRU. The digest itself
        is remembered per principal object (the directory makes a new one when its Secret
        changes; the entry holds the object, so its id cannot be reused meanwhile)."""
        known = self._by_principal.get(id(principal))
        if known is not None and known[0] is principal:
            parsed = self._parsed.get(known[1])
            if parsed is not None:
                return parsed
        text = json.dumps(principal.policies, sort_keys=True, separators=(",", ":"))
        cache_key = hashlib.sha256(text.encode()).hexdigest()
        if len(self._by_principal) >= POLICY_CACHE_SIZE:
            self._by_principal.clear()
        self._by_principal[id(principal)] = (principal, cache_key)
        parsed = self._parsed.get(cache_key)
        if parsed is None:
            parsed = self._parsed[cache_key] = tuple(principal.parsed_policies())
            if len(self._parsed) > POLICY_CACHE_SIZE:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(cache_key)
        return parsed


SOURCE_IP = web.RequestKey("source_ip", str)
"""The client's address, set on every request by the gateway's middleware (``client_ip``)."""


def source_ip(request: web.Request) -> str:
    """The client's address: behind trusted proxies, from X-Forwarded-For (``client_ip``)."""
    return request.get(SOURCE_IP) or request.remote or ""


def context_keys(
    request: web.Request, identity: Identity | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Global condition keys (aws:*) plus service keys (lambda:*) for one request."""
    ctx = {
        "aws:SourceIp": source_ip(request),
        "aws:SecureTransport": "true" if request.secure else "false",
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "aws:EpochTime": str(int(time.time())),
    }
    if identity is not None:
        p = identity.principal
        ctx.update(
            {
                "aws:PrincipalArn": p.arn,
                "aws:PrincipalAccount": p.account,
                "aws:username": p.name,
                "aws:userid": p.user_id,
                "aws:PrincipalType": "User",
            }
        )
    if extra:
        ctx.update(extra)
    return ctx


def authorize(
    identity: Identity | None,
    action: str,
    resource: str,
    resource_account: str,
    resource_policy: Policy | None,
    context: Mapping[str, str],
    resource_namespace: str | None = None,
) -> None:
    """Raises AccessDenied (with AWS's message) unless the policies allow ``action``."""
    caller = identity.caller if identity else Caller(None, None)
    decision = evaluate(
        identity.policies if identity else (),
        resource_policy,
        Ask(caller, action, resource, resource_account, context, resource_namespace),
    )
    if not decision.allowed:
        who = caller.arn or "anonymous"
        raise AccessDenied(
            f"User: {who} is not authorized to perform: {action} on resource: {resource} "
            f"{decision.reason}"
        )
