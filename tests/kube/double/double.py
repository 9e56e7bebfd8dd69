"""The public face: :class:`KubeApiDouble`, a loopback Kubernetes API server for tests.

    async with KubeApiDouble() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        api.add_token("t0ken", "system:serviceaccount:default:klambda", ["system:serviceaccounts"])
        api.fail(503, "/api/v1/namespaces/default/pods", times=2, retry_after=1)
        ...

``threaded.py`` runs one in a background thread for synchronous tests. Objects can be seeded
and inspected without HTTP (:meth:`create`, :meth:`get`, :meth:`objects`): those go through the
same write rules as requests.
"""

from __future__ import annotations

import asyncio
import copy
import re
import socket
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import writes
from .auth import UserInfo
from .controllers import Controllers, stop
from .conversion import from_storage
from .errors import ApiError
from .faults import Fault, Faults, RequestRecord
from .kinds import ResourceType
from .meta import Clock, utc_now
from .params import Query
from .routing import Target
from .server import make_app
from .settings import Cluster, Settings

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ADMIN_TOKEN = "kube-api-double-admin"


class KubeApiDouble:
    """A Kubernetes API server double on 127.0.0.1 (an ephemeral port)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock = utc_now,
        raise_server_errors: bool = True,
        **overrides: Any,
    ) -> None:
        """``overrides`` are :class:`Settings` fields (e.g. ``history_size=5``)."""
        self.settings = settings or Settings(**overrides)
        self._clock = clock
        self._raise_server_errors = raise_server_errors
        self.faults = Faults()
        self.server_errors: list[BaseException] = []
        self._cluster: Cluster | None = None
        self._runner: web.AppRunner | None = None
        self._controllers: asyncio.Task[None] | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._cluster = cluster = Cluster.new(self.settings, self._clock)
        for name in INITIAL_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        labels = {"component": "apiserver", "provider": "kubernetes"}
        self.create({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {"clusterIP": "10.96.0.1",
                     "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        })  # fmt: skip
        self._runner = web.AppRunner(
            make_app(cluster, self.faults, self.server_errors),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.settings.host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._controllers = asyncio.create_task(
            Controllers(cluster).run(), name="kube-api-double-controllers"
        )

    async def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.store.close_watches()
        if self._controllers is not None:
            if (
                self._controllers.done()
                and not self._controllers.cancelled()
                and self._controllers.exception()
            ):
                self.server_errors.append(self._controllers.exception() or RuntimeError())
            await stop(self._controllers)
            self._controllers = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeApiDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._raise_server_errors and self.server_errors and exc[0] is None:
            raise AssertionError(
                f"the API double failed while serving: {self.server_errors!r}"
            ) from self.server_errors[0]

    # connection --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("the API double is not started")
        return self._cluster

    def kubeconfig(self, namespace: str = "default", token: str = ADMIN_TOKEN) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-api-double", "cluster": {"server": self.url}}],
            "users": [{"name": "kube-api-double", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kube-api-double",
                    "context": {
                        "cluster": "kube-api-double",
                        "user": "kube-api-double",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "kube-api-double",
        }

    def write_kubeconfig(
        self, path: str | Path, namespace: str = "default", token: str = ADMIN_TOKEN
    ) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace, token), sort_keys=False))
        return path

    # tokens and faults ---------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        username: str,
        groups: list[str] | tuple[str, ...] = (),
        *,
        uid: str = "",
        extra: dict[str, list[str]] | None = None,
        audiences: list[str] | tuple[str, ...] = (),
    ) -> None:
        """Make TokenReview authenticate ``token`` as this user."""
        self.cluster.tokens.add(
            token, UserInfo(username, uid, tuple(groups), dict(extra or {}), tuple(audiences))
        )

    def remove_token(self, token: str) -> None:
        self.cluster.tokens.remove(token)

    def fail(
        self,
        status: int,
        path: str | re.Pattern[str],
        *,
        method: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Answer the next ``times`` requests to ``path`` (exact, or a regex) with ``status``."""
        return self.faults.add(
            Fault(status, path, method, times, retry_after, reason, message, delay)
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        return self.faults.requests

    # direct access (same rules as HTTP, no transport) --------------------------------------

    @property
    def resource_version(self) -> int:
        return self.cluster.store.rv

    def _rtype(self, api_version: str, kind: str) -> ResourceType:
        rtype = self.cluster.registry.for_kind(api_version, kind)
        if rtype is None:
            raise LookupError(f"no kind {kind} in {api_version} is served")
        return rtype

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` as a POST would (raises :class:`ApiError` as the POST would answer)."""
        rtype = self._rtype(obj["apiVersion"], obj["kind"])
        namespace = (
            (obj.get("metadata") or {}).get("namespace") or "default" if rtype.namespaced else ""
        )
        _, body, _ = writes.create(
            self.cluster, Target(rtype, namespace), copy.deepcopy(obj), Query()
        )
        self.cluster.changed.set()
        return body

    def get(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> dict[str, Any] | None:
        rtype = self._rtype(api_version, kind)
        stored = self.cluster.store.get(
            rtype.storage_key, namespace if rtype.namespaced else "", name
        )
        return from_storage(stored, rtype) if stored is not None else None

    def objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        rtype = self._rtype(api_version, kind)
        return [
            from_storage(o, rtype) for o in self.cluster.store.items(rtype.storage_key, namespace)
        ]

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the simulated controllers have nothing left to do."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_for = self.settings.controller_delay * 3 + 0.01
        while loop.time() < deadline:
            if not self.cluster.changed.is_set():
                await asyncio.sleep(quiet_for)
                if not self.cluster.changed.is_set():
                    return
            await asyncio.sleep(self.settings.controller_delay)
        raise TimeoutError("the API double's controllers did not settle")


__all__ = ["ADMIN_TOKEN", "ApiError", "KubeApiDouble", "Settings"]
