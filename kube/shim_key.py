"""The platform key on Kubernetes: one Secret in the platform's namespace.

Shims' caller tokens derive from it (``api.shim_auth``). The operator makes it on first start
(32 random bytes) and derives each version's token into its pods; every gateway reads it. Only
the platform's own ServiceAccounts may read Secrets in its namespace, so tenants never see it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets

from klambda.api.shim_auth import KEY_BYTES
from klambda.kube import names
from klambda.kube.client import Conflict, KubeClient, KubeError, NotFound, path_for

log = logging.getLogger(__name__)

SECRET_NAME = "klambda-shim-key"
SECRET_KEY = "key"


def _path(namespace: str, name: str | None = None) -> str:
    return path_for("", "v1", "secrets", namespace, name)


def _decode(secret: dict[str, object]) -> bytes:
    data = secret.get("data")
    value = data.get(SECRET_KEY) if isinstance(data, dict) else None
    key = base64.b64decode(str(value or ""))
    if len(key) < KEY_BYTES:
        raise KubeError(0, "BadShimKey", f"Secret {SECRET_NAME} holds no {KEY_BYTES}-byte key")
    return key


async def ensure_shim_key(client: KubeClient, namespace: str) -> bytes:
    """The operator: the key, made now if this is the platform's first start."""
    try:
        return _decode(await client.get(_path(namespace, SECRET_NAME)))
    except NotFound:
        pass
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": names.MANAGED_BY},
        },
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()},
    }
    try:
        return _decode(await client.create(_path(namespace), manifest))
    except Conflict:  # another replica made it first
        return _decode(await client.get(_path(namespace, SECRET_NAME)))


async def read_shim_key(client: KubeClient, namespace: str) -> bytes:
    """A gateway: the key, waiting (with a log line) until the operator has made it."""
    delay = 0.5
    while True:
        try:
            return _decode(await client.get(_path(namespace, SECRET_NAME)))
        except NotFound:
            log.info("waiting for the operator to create Secret %s/%s", namespace, SECRET_NAME)
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)
