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


def _created(secret: dict[str, Any]) -> tuple[str, str]:
    meta = secret.get("metadata", {})
    return (str(meta.get("creationTimestamp", "")), str(meta.get("uid", "")))


class SecretDirectory:
    """Access keys and ServiceAccount policies from Secrets, kept current by informers.

    Secrets are indexed by access key id and by (namespace, ServiceAccount), so a lookup costs
    the same with ten Secrets or ten thousand, and parsed once per resourceVersion. An access
    key id held by several Secrets (in any namespaces) belongs to the oldest: a later copy
    cannot shadow it, and is refused (logged once).
    """

    def __init__(self, client: KubeClient) -> None:
        self.keys = Informer(
            client,
            path_for("", "v1", "secrets"),
            self._noop,
            label_selector=PRINCIPAL_LABEL,
            index=lambda secret: _decoded(secret, "accessKeyId"),
        )
        self.accounts = Informer(
            client,
            path_for("", "v1", "secrets"),
            self._noop,
            label_selector=SERVICE_ACCOUNT_LABEL,
            index=lambda secret: (
                secret.get("metadata", {}).get("namespace", ""),
                (secret.get("metadata", {}).get("labels") or {}).get(SERVICE_ACCOUNT_LABEL),
            ),
        )
        self._parsed: dict[tuple[str, str], tuple[AccessKey, Principal]] = {}
        self._warned: set[tuple[str, ...]] = set()

    def _noop(self, *_: Any) -> None: ...

    def lookup(self, access_key_id: str) -> tuple[AccessKey, Principal] | None:
        holders = sorted(self.keys.indexed(access_key_id), key=_created)
        if not holders:
            return None
        secret = holders[0]
        if len(holders) > 1:
            self._refuse_copies(access_key_id, holders)
        meta = secret["metadata"]
        version = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        parsed = self._parsed.get(version)
        if parsed is None:
            name = meta["labels"][PRINCIPAL_LABEL]
            principal = Principal(name, meta["namespace"], _policies(secret))
            key_secret = _decoded(secret, "secretAccessKey") or ""
            key = AccessKey(access_key_id, key_secret, f"{meta['namespace']}/{name}")
            if len(self._parsed) > 10_000:  # old resourceVersions pile up: start afresh
                self._parsed.clear()
            parsed = self._parsed[version] = (key, principal)
        return parsed

    def _refuse_copies(self, access_key_id: str, holders: list[dict[str, Any]]) -> None:
        where = tuple(f"{h['metadata']['namespace']}/{h['metadata']['name']}" for h in holders)
        if where not in self._warned:
            self._warned.add(where)
            log.warning(
                "access key id %s is in several Secrets: %s holds it (the oldest); refused: %s",
                access_key_id,
                where[0],
                ", ".join(where[1:]),
            )

    def service_account(self, namespace: str, name: str) -> Principal:
        found = sorted(self.accounts.indexed((namespace, name)), key=_created)
        policies = _policies(found[0]) if found else ()
        return Principal(name, namespace, policies, service_account=True)


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
