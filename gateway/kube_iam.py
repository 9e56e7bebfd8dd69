"""Principals on Kubernetes: access keys in Secrets, and ServiceAccount tokens via TokenReview.

A principal's key pair is a Secret labelled ``klambda.io/principal=<name>`` in the principal's
namespace (= account), with data ``accessKeyId``, ``secretAccessKey`` and optionally ``policy``
(IAM JSON). In-cluster callers may instead present their ServiceAccount token as a bearer
token: the API server's TokenReview vouches for it, and the ServiceAccount
``system:serviceaccount:<ns>:<name>`` becomes principal ``<name>`` in namespace ``<ns>``, with
the policy of a Secret labelled ``klambda.io/serviceaccount=<name>`` there, if any.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from klambda.api.iam import AccessKey, Principal
from klambda.kube.client import KubeClient, KubeError, path_for
from klambda.kube.informer import Informer

log = logging.getLogger(__name__)

PRINCIPAL_LABEL = "klambda.io/principal"
SERVICE_ACCOUNT_LABEL = "klambda.io/serviceaccount"
TOKEN_CACHE_SECONDS = 60.0


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
                return Principal(name, namespace, _policies(secret))
        return Principal(name, namespace, ())


class TokenReviewer:
    """Asks the API server who a bearer token belongs to (cached briefly)."""

    def __init__(self, client: KubeClient, directory: SecretDirectory) -> None:
        self.client = client
        self.directory = directory
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def review(self, token: str) -> Principal | None:
        hit = self._cache.get(token)
        if hit and time.monotonic() - hit[0] < TOKEN_CACHE_SECONDS:
            return hit[1]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
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
        if status.get("authenticated") and username.startswith("system:serviceaccount:"):
            _, _, namespace, name = username.split(":", 3)
            principal = self.directory.service_account(namespace, name)
        self._cache[token] = (time.monotonic(), principal)
        return principal
