"""Principals on Kubernetes: access keys in Secrets, and ServiceAccount tokens via TokenReview.

A principal's key pair is a Secret labelled ``klambda.io/principal=<name>`` in the principal's
namespace (= account), with data ``accessKeyId``, ``secretAccessKey`` and optionally ``policy``
(IAM JSON). In-cluster callers may instead present their ServiceAccount token as a bearer
token: the API server's TokenReview vouches for it, and the ServiceAccount
``system:serviceaccount:<ns>:<name>`` becomes principal ``<name>`` in namespace ``<ns>``, with
the policy of a Secret labelled ``klambda.io/serviceaccount=<name>`` there, if any.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from klambda.api.iam import AccessKey, Principal
from klambda.kube.client import KubeClient, KubeError, path_for
from klambda.kube.informer import Informer

log = logging.getLogger(__name__)

PRINCIPAL_LABEL = "klambda.io/principal"
SERVICE_ACCOUNT_LABEL = "klambda.io/serviceaccount"
TOKEN_AUDIENCE = "klambda"
"""The audience ServiceAccount tokens must be minted for: ``kubectl create token SA
--audience klambda``."""
TOKEN_CACHE_SECONDS = 60.0
NEGATIVE_CACHE_SECONDS = 10.0
TOKEN_CACHE_SIZE = 4096
REVIEWS_AT_ONCE = 8


def _decoded(secret: dict[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return (secret.get("stringData") or {}).get(key)
    try:
        return base64.b64decode(raw).decode()
    except ValueError:
        return None


def _policies(secret: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    raw = _decoded(secret, "policy")
    if not raw:
        return ()
    try:
        doc = json.loads(raw)
    except ValueError:
        log.warning("Secret %s: policy is not JSON; ignored", secret["metadata"].get("name"))
        return ()
    return (doc,) if isinstance(doc, dict) else ()


class SecretDirectory:
    """Access keys and ServiceAccount policies from Secrets, kept current by informers."""

    def __init__(self, client: KubeClient) -> None:
        self.keys = Informer(
            client, path_for("", "v1", "secrets"), self._noop, label_selector=PRINCIPAL_LABEL
        )
        self.accounts = Informer(
            client, path_for("", "v1", "secrets"), self._noop, label_selector=SERVICE_ACCOUNT_LABEL
        )

    def _noop(self, *_: Any) -> None: ...

    def lookup(self, access_key_id: str) -> tuple[AccessKey, Principal] | None:
        for secret in self.keys.cache.values():
            if _decoded(secret, "accessKeyId") != access_key_id:
                continue
            meta = secret["metadata"]
            name = meta["labels"][PRINCIPAL_LABEL]
            principal = Principal(name, meta["namespace"], _policies(secret))
            key_secret = _decoded(secret, "secretAccessKey") or ""
            return AccessKey(access_key_id, key_secret, f"{meta['namespace']}/{name}"), principal
        return None

    def service_account(self, namespace: str, name: str) -> Principal:
        for secret in self.accounts.cache.values():
            meta = secret["metadata"]
            if (
                meta.get("namespace") == namespace
                and meta["labels"].get(SERVICE_ACCOUNT_LABEL) == name
            ):
                return Principal(name, namespace, _policies(secret), service_account=True)
        return Principal(name, namespace, (), service_account=True)


class TokenReviewer:
    """Asks the API server who a bearer token belongs to.

    Answers are cached by the token's digest (never the token itself) in a bounded LRU: valid
    tokens for TOKEN_CACHE_SECONDS, unknown ones for NEGATIVE_CACHE_SECONDS only (junk tokens
    cost one review each, then little memory). Concurrent requests with one token share one
    review, and at most REVIEWS_AT_ONCE reviews are in flight, so a flood of junk tokens cannot
    turn into a flood of API calls.
    """

    def __init__(self, client: KubeClient, directory: SecretDirectory) -> None:
        self.client = client
        self.directory = directory
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._running: dict[str, asyncio.Future[Principal | None]] = {}
        self._slots = asyncio.Semaphore(REVIEWS_AT_ONCE)

    async def review(self, token: str) -> Principal | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit is not None:
            at, principal = hit
            ttl = TOKEN_CACHE_SECONDS if principal is not None else NEGATIVE_CACHE_SECONDS
            if time.monotonic() - at < ttl:
                self._cache.move_to_end(key)
                return principal
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            async with self._slots:
                principal = await self._ask(token)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: waiters, if any, get it too
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(principal)
        self._cache[key] = (time.monotonic(), principal)
        self._cache.move_to_end(key)
        while len(self._cache) > TOKEN_CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    async def _ask(self, token: str) -> Principal | None:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            # only tokens minted for klambda: one meant for the API server (or anything else)
            # is refused, so a token klambda sees is of no use elsewhere if it leaks
            "spec": {"token": token, "audiences": [TOKEN_AUDIENCE]},
        }
        try:
            result = await self.client.create(
                path_for("authentication.k8s.io", "v1", "tokenreviews"), body
            )
        except KubeError as e:
            log.warning("TokenReview failed: %s", e)
            return None
        status = result.get("status", {})
        principal = None
        username = str(status.get("user", {}).get("username", ""))
        audiences = status.get("audiences") or []
        if (
            status.get("authenticated")
            and TOKEN_AUDIENCE in audiences
            and username.startswith("system:serviceaccount:")
        ):
            _, _, namespace, name = username.split(":", 3)
            principal = self.directory.service_account(namespace, name)
        return principal
