"""The platform as ``helm install`` makes it, on the API double: the chart installed with real
Helm, its operator and gateway Deployments run by the platform kubelet (their command, args and
env; their ServiceAccounts' tokens, so RBAC is the chart's), function pods by the process
kubelet, the gateway Service as a proxy over the ready gateway pods. Redis is the chart's
external one (``redis.external``): an embedded server whose password is in a Secret."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from klambda.controller.platform.redis_server import EmbeddedRedis
from klambda.kube.client import KubeClient, KubeConfig, path_for
from tests.kube.double import KubeApiDouble
from tests.kube.test_chart import CHART, NAMESPACE, install
from tests.kube_e2e.kubelet import ProcessKubelet
from tests.kube_e2e.platform_kubelet import PlatformKubelet, ServiceProxy

ACCOUNTS = ("klambda-operator", "klambda-gateway")


@dataclass
class ChartPlatform:
    api: KubeApiDouble
    client: KubeClient
    kubeconfig: Path
    """The admin's (the user's kubectl and helm)."""
    platform: PlatformKubelet
    gateway_url: str
    """The gateway Service, as a user inside the cluster reaches it."""
    values: dict[str, Any]
    tmp: Path

    @property
    def kubectl(self) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", "default"]

    async def apply(self, path: Path) -> None:
        done = await asyncio.to_thread(
            subprocess.run, [*self.kubectl, "apply", "-f", str(path)], capture_output=True
        )
        assert done.returncode == 0, done.stderr

    async def upgrade(self, chart: Path = CHART, **values: Any) -> None:
        await install(self.kubeconfig, {**self.values, **values}, "upgrade", chart)

    def logs(self) -> str:
        return " | ".join(
            f"{p.name}: {p.read_text(errors='replace')[-1500:]}"
            for p in sorted(self.tmp.glob("klambda-*.log"))
        )


@contextlib.asynccontextmanager
async def chart_platform(tmp: Path, **values: Any) -> AsyncIterator[ChartPlatform]:
    """``values``: the chart's, over an external Redis."""
    async with KubeApiDouble() as api:
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        (tmp / "redis").mkdir()
        redis = await EmbeddedRedis.start(tmp / "redis")
        functions = ProcessKubelet(client, tmp / "pods")
        platform: PlatformKubelet | None = None
        service: ServiceProxy | None = None
        try:
            url = urlsplit(redis.url)
            await _namespace_and_redis_secret(client, str(url.password))
            values = {
                "redis": {
                    "enabled": False,
                    "external": {
                        "url": f"redis://127.0.0.1:{url.port}/0",
                        "passwordSecret": {"name": "my-redis", "key": "password"},
                    },
                },
                **values,
            }
            await install(kubeconfig, values)
            kubeconfigs = {a: await _account_kubeconfig(api, client, a, tmp) for a in ACCOUNTS}
            platform = PlatformKubelet(client, NAMESPACE, tmp, kubeconfigs)
            await platform.start()
            service = ServiceProxy(platform, "klambda-gateway")
            await service.start()
            await functions.start()
            yield ChartPlatform(
                api, client, kubeconfig, platform, f"http://127.0.0.1:{service.port}", values, tmp
            )
        finally:
            if service is not None:
                await service.stop()
            if platform is not None:
                await platform.stop()
            await functions.stop()
            await client.close()
            await redis.stop()


async def _namespace_and_redis_secret(client: KubeClient, password: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    await client.create(path_for("", "v1", "namespaces"), namespace)  # --create-namespace
    await client.create(
        path_for("", "v1", "secrets", NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "my-redis", "namespace": NAMESPACE},
            "data": {"password": base64.b64encode(password.encode()).decode()},
        },
    )


async def _account_kubeconfig(
    api: KubeApiDouble, client: KubeClient, account: str, tmp: Path
) -> Path:
    """A kubeconfig with a token of ServiceAccount ``account`` (TokenRequest): what a pod of
    it gets mounted, so the double authorizes every request by the chart's RBAC."""
    path = path_for("", "v1", "serviceaccounts", NAMESPACE, account) + "/token"
    minted = await client.create(
        path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    )
    return api.write_kubeconfig(tmp / f"{account}.kubeconfig", token=minted["status"]["token"])
