"""The path a user takes, minus container images: ``helm install`` the chart (real Helm) on the
API double, run the operator and the gateway exactly as its Deployments say (their command,
args and env, with ``$(VAR)`` expanded from the Secrets the env names, as a kubelet does; only a
kubeconfig is added, since they run outside a pod), apply examples/hello.yaml, and get HTTP 200
from the function URL with the function's pods run by the process kubelet. Redis is the
chart's external one (``redis.external``), an embedded server whose password is in a Secret.

Each runs with a token of the ServiceAccount its Deployment names, so the double authorizes
every request by the chart's Roles; after a tour of everything they do (``rbac_tour.py``),
neither was refused anything, and neither is granted anything it did not use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from klambda.controller.platform.redis_server import EmbeddedRedis
from klambda.kube.client import KubeClient, KubeConfig, path_for
from tests.helpers import free_port
from tests.kube.double import KubeApiDouble
from tests.kube_e2e.kubelet import ProcessKubelet
from tests.kube_e2e.rbac_tour import rbac_tour, rbac_use
from tests.kube_e2e.test_operator_e2e import REPO, eventually

pytest.importorskip("helm_sdkpy", reason="helm-sdkpy is not installed")
from tests.kube.test_chart import NAMESPACE, install

KLAMBDA = [sys.executable, "-m", "klambda.cli.main"]
"""What the image's ``klambda`` command is here."""


async def test_the_charts_operator_and_gateway_serve_a_function(tmp_path: Path) -> None:
    async with KubeApiDouble() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        (tmp_path / "redis").mkdir()
        redis = await EmbeddedRedis.start(tmp_path / "redis")
        kubelet = ProcessKubelet(client, tmp_path / "pods")
        processes: list[subprocess.Popen[bytes]] = []
        try:
            url = urlsplit(redis.url)
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            await client.create(path_for("", "v1", "namespaces"), namespace)  # --create-namespace
            await client.create(
                path_for("", "v1", "secrets", NAMESPACE),
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "my-redis", "namespace": NAMESPACE},
                    "data": {"password": base64.b64encode(str(url.password).encode()).decode()},
                },
            )
            values = {
                "redis": {
                    "enabled": False,
                    "external": {
                        "url": f"redis://127.0.0.1:{url.port}/0",
                        "passwordSecret": {"name": "my-redis", "key": "password"},
                    },
                },
            }
            await install(kubeconfig, values)
            port = free_port()
            for name in ("klambda-operator", "klambda-gateway"):
                argv, env = await _as_the_kubelet_would(client, name, port)
                own = await _service_account_kubeconfig(api, client, name, tmp_path)
                argv += ["--kubeconfig", str(own)]
                processes.append(_spawn(argv, env, tmp_path / f"{name}.log"))
            await kubelet.start()
            kubectl = ["kubectl", "--kubeconfig", str(kubeconfig), "-n", "default"]
            applied = await asyncio.to_thread(
                subprocess.run,
                [*kubectl, "apply", "-f", str(REPO / "examples/hello.yaml")],
                capture_output=True,
                text=True,
            )
            assert applied.returncode == 0, applied.stderr
            function_url = f"http://127.0.0.1:{port}/lambda-url/hello/?name=ada"

            async def served() -> str | None:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(function_url, timeout=aiohttp.ClientTimeout(total=30)) as r,
                ):
                    return await r.text() if r.status == 200 else None

            body = await eventually(served, 90, _logs(tmp_path))
            assert "ada" in body
            await rbac_tour(client, kubectl, port)
            await _stop(processes)  # the operator hands its Lease back: an update
            for account in ("klambda-operator", "klambda-gateway"):
                user = f"system:serviceaccount:{NAMESPACE}:{account}"
                refused, unused = rbac_use(api.cluster.authorizer, user, NAMESPACE)
                assert not refused, f"{account} was refused: {refused}"
                assert not unused, f"{account}'s rules grant what it never used: {unused}"
        finally:
            await _stop(processes)
            await kubelet.stop()
            await client.close()
            await redis.stop()


async def _as_the_kubelet_would(
    client: KubeClient, name: str, port: int
) -> tuple[list[str], dict[str, str]]:
    """The Deployment's container command line and env, with $(VAR) expanded and secretKeyRef
    values read, as a kubelet starts it; the gateway listens on ``port``."""
    deployment = await client.get(path_for("apps", "v1", "deployments", NAMESPACE, name))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[item["name"]] = str(item.get("value", ""))
            continue
        found = await client.get(path_for("", "v1", "secrets", NAMESPACE, ref["name"]))
        env[item["name"]] = base64.b64decode(found["data"][ref["key"]]).decode()

    def expand(arg: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg)

    command = container["command"]
    assert command[0] == "klambda", command
    args = [expand(a) for a in container.get("args", [])]
    args = [f"--port={port}" if a.startswith("--port=") else a for a in args]
    return [*KLAMBDA, *command[1:], *args], env


async def _service_account_kubeconfig(
    api: KubeApiDouble, client: KubeClient, deployment: str, tmp: Path
) -> Path:
    """A kubeconfig with a token of the service account the chart's Deployment runs as: what
    a pod gets mounted, so the double authorizes every request by the chart's RBAC."""
    found = await client.get(path_for("apps", "v1", "deployments", NAMESPACE, deployment))
    account = found["spec"]["template"]["spec"]["serviceAccountName"]
    path = path_for("", "v1", "serviceaccounts", NAMESPACE, account) + "/token"
    minted = await client.create(path, {"apiVersion": "authentication.k8s.io/v1",
                                        "kind": "TokenRequest", "spec": {}})  # fmt: skip
    return api.write_kubeconfig(tmp / f"{account}.kubeconfig", token=minted["status"]["token"])


async def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 15)
        if process.poll() is None:
            process.kill()
            process.wait()


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)


def _logs(tmp: Path) -> str:
    return "HTTP 200 from hello through the chart's gateway: not in time; logs: " + " | ".join(
        f"{p.name}: {p.read_text()[-1500:]}" for p in tmp.glob("klambda-*.log")
    )
