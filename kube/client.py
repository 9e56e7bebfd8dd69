"""A thin asyncio client for the Kubernetes API (the adapter edge: aiohttp in, our errors out).

Only what the operator and the gateway use: get, list, create, replace, merge/JSON patch,
delete, watch, on any resource path. Transient failures (connection errors, 5xx, 429 honouring
Retry-After) are retried here and nowhere else, with the attempt number in the log; everything
else surfaces as a ``KubeError`` subclass the callers classify (NotFound, Conflict, Gone, ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from klambda.kube.paths import path_for as path_for  # re-exported: callers build paths with it
from klambda.kube.ratelimit import TokenBucket

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RETRIES = 4


class KubeError(Exception):
    """The API server refused a request; ``status`` and ``reason`` are Kubernetes'."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


class NotFound(KubeError): ...


class Conflict(KubeError):
    """409: AlreadyExists, or a stale resourceVersion (re-read and retry)."""


class Gone(KubeError):
    """410: the resourceVersion is too old; re-list."""


class Invalid(KubeError):
    """422: the object breaks the schema (permanent until the spec changes)."""


class Temporary(KubeError):
    """Transient trouble that outlived the retries."""


_BY_STATUS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None
    ssl: ssl.SSLContext | bool = True
    namespace: str = "default"

    @classmethod
    def load(cls, path: str | None = None) -> KubeConfig:
        """From ``path``, $KUBECONFIG, ~/.kube/config, or the pod's service account."""
        candidate = path or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
        if Path(candidate).is_file():
            return cls.from_kubeconfig(yaml.safe_load(Path(candidate).read_text()))
        if (SERVICE_ACCOUNT_DIR / "token").is_file():
            return cls.in_cluster()
        raise KubeError(0, "NoConfig", f"no kubeconfig at {candidate} and not in a cluster")

    @classmethod
    def in_cluster(cls) -> KubeConfig:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        ctx = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
        token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
        namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
        return cls(f"https://{host}:{port}", token, ctx, namespace)

    @classmethod
    def from_kubeconfig(cls, doc: dict[str, Any]) -> KubeConfig:
        def named(section: str, name: str) -> dict[str, Any]:
            for item in doc.get(section) or []:
                if item.get("name") == name:
                    return dict(item.get(section[:-1]) or {})
            raise KubeError(0, "BadConfig", f"kubeconfig has no {section[:-1]} {name!r}")

        context = named("contexts", doc.get("current-context", ""))
        cluster = named("clusters", context["cluster"])
        user = named("users", context["user"]) if context.get("user") else {}
        server = str(cluster["server"]).rstrip("/")
        tls: ssl.SSLContext | bool = True
        if server.startswith("https"):
            tls = _ssl_context(cluster, user)
        return cls(server, user.get("token"), tls, context.get("namespace", "default"))


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=cluster["certificate-authority"])
    cert, key = user.get("client-certificate"), user.get("client-key")
    if user.get("client-certificate-data"):
        with (
            tempfile.NamedTemporaryFile("wb", delete=False) as c,
            tempfile.NamedTemporaryFile("wb", delete=False) as k,
        ):
            c.write(base64.b64decode(user["client-certificate-data"]))
            k.write(base64.b64decode(user["client-key-data"]))
        cert, key = c.name, k.name
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class KubeClient:
    def __init__(self, config: KubeConfig, qps: float = 100.0, burst: int = 200) -> None:
        self.config = config
        self.limiter = TokenBucket(qps, burst)
        headers = {"Accept": "application/json"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._session = aiohttp.ClientSession(
            config.server,
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=config.ssl, limit=64),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(1, RETRIES + 1):
            await self.limiter.acquire()
            try:
                async with self._session.request(
                    method,
                    path,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as resp:
                    payload = await resp.read()
                    if resp.status < 400:
                        return json.loads(payload) if payload else None
                    error = _error(resp.status, payload)
                    if resp.status in (429, 500, 502, 503, 504) and attempt < RETRIES:
                        delay = _retry_after(resp.headers.get("Retry-After"), attempt)
                        log.warning(
                            "%s %s: %s (attempt %d; retrying in %.1fs)",
                            method,
                            path,
                            error,
                            attempt,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        continue
                    raise error
            except (aiohttp.ClientError, TimeoutError) as e:
                if attempt == RETRIES:
                    raise Temporary(0, "Unreachable", f"{method} {path}: {e}") from e
                log.warning("%s %s: %s (attempt %d)", method, path, e, attempt)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any]:
        return dict(await self._request("GET", path))

    async def list(self, path: str, label_selector: str | None = None) -> dict[str, Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        return dict(await self._request("GET", path, params=params))

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._request("POST", path, body))

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._request("PUT", path, body))

    async def patch(
        self, path: str, body: Any, content_type: str = "application/merge-patch+json"
    ) -> dict[str, Any]:
        return dict(await self._request("PATCH", path, body, content_type=content_type))

    async def delete(self, path: str, propagation: str = "Background") -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        with contextlib.suppress(NotFound):
            await self._request("DELETE", path, body)

    async def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int = 60,
        label_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version`` until the server closes the stream.

        Raises Gone when the version is too old (the caller re-lists).
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        await self.limiter.acquire()  # a watch that keeps ending must not spin
        try:
            async with self._session.get(
                path, params=params, timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30)
            ) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        raise _error(int(obj.get("code") or 500), json.dumps(obj).encode())
                    yield kind, obj
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Temporary(0, "WatchBroken", f"watch {path}: {e}") from e


def _error(status: int, payload: bytes) -> KubeError:
    try:
        body = json.loads(payload)
    except ValueError:
        body = {"message": payload.decode(errors="replace")}
    cls = _BY_STATUS.get(status, Temporary if status >= 500 or status == 429 else KubeError)
    return cls(status, str(body.get("reason", "")), str(body.get("message", "")), body)


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        return min(10.0, float(header)) if header else 0.2 * 2**attempt
    except ValueError:
        return 0.2 * 2**attempt
