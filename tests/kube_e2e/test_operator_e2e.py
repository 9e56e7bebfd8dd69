"""From ``kubectl apply`` to an HTTP response, on Kubernetes (the API double, or a real cluster).

The operator and the gateway run against the API; the process kubelet runs the pods the
operator's Deployments ask for as local shim processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from klambda.controller.kube.client import KubeClient, KubeConfig, path_for
from klambda.controller.kube.operator import OperatorSettings
from klambda.controller.kube.operator import run as run_operator
from klambda.gateway.serve import run as run_gateway
from klambda.gateway.settings import GatewaySettings
from tests.helpers import free_port
from tests.kube.double import KubeApiDouble
from tests.kube_e2e.kubelet import ProcessKubelet

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    api: KubeApiDouble
    kubeconfig: Path
    client: KubeClient
    gateway_url: str
    tmp: Path

    async def kubectl(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL or "kubectl",
            *args,
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "KUBECACHEDIR": str(self.tmp / "kubecache"),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        code = proc.returncode or 0
        if check and code != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {err.decode()}")
        return code, out.decode(), err.decode()

    async def function(self, name: str) -> dict[str, Any]:
        return await self.client.get(
            path_for("klambda.io", "v1alpha1", "functions", "default", name)
        )


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = await check()
            if value:
                return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with KubeApiDouble() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        port = free_port()
        c = Cluster(api, kubeconfig, client, f"http://127.0.0.1:{port}", tmp_path)
        await c.kubectl("apply", "-f", str(REPO / "charts/klambda/crds"))
        await api.settle()
        stop = asyncio.Event()
        kubelet = ProcessKubelet(client, tmp_path / "pods")
        operator = asyncio.create_task(
            run_operator(
                OperatorSettings(
                    kubeconfig=str(kubeconfig), gateway_url=c.gateway_url, resync_period=2.0
                ),
                stop,
            )
        )
        gateway = asyncio.create_task(
            run_gateway(
                GatewaySettings(host="127.0.0.1", port=port),
                str(kubeconfig),
                None,
                c.gateway_url,
                stop,
            )
        )
        await kubelet.start()
        try:
            yield c
        finally:
            stop.set()
            await asyncio.gather(operator, gateway, return_exceptions=True)
            await kubelet.stop()
            await client.close()


async def test_kubectl_apply_to_http_response(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", str(REPO / "examples/hello.yaml"))

    async def ready() -> bool:
        fn = await cluster.function("hello")
        conditions = fn.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    await eventually(ready)
    fn = await cluster.function("hello")
    assert fn["status"]["url"] == f"{cluster.gateway_url}/lambda-url/hello/"
    assert fn["status"]["codeSha256"]
    deployment = await cluster.client.get(
        path_for("apps", "v1", "deployments", "default", "fn-hello-latest")
    )
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "Function"
    assert deployment["spec"]["replicas"] == 0  # scaled to zero until invoked

    async def hello() -> dict[str, Any] | None:
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{cluster.gateway_url}/lambda-url/hello/?name=ada",
                timeout=aiohttp.ClientTimeout(total=40),
            ) as r,
        ):
            return await r.json() if r.status == 200 else None

    body = await eventually(hello, timeout=60)
    assert body["message"] == "hello, ada!"
    _, out, _ = await cluster.kubectl("get", "fn")
    assert "hello" in out and "python3.11" in out
    _, described, _ = await cluster.kubectl("describe", "function", "hello")
    events = described.split("Events:", 1)[1]
    assert "EnvironmentReady" in events and "klambda-operator" in events, described

    await cluster.kubectl("delete", "fn", "hello")

    async def gone() -> bool:
        try:
            await cluster.client.get(
                path_for("apps", "v1", "deployments", "default", "fn-hello-latest")
            )
        except Exception:  # NotFound: garbage collected through ownerReferences
            return True
        return False

    await eventually(gone)


async def test_invalid_manifest_is_rejected_by_the_crd(cluster: Cluster) -> None:
    bad = cluster.tmp / "bad.yaml"
    bad.write_text(
        json.dumps(
            {
                "apiVersion": "klambda.io/v1alpha1",
                "kind": "Function",
                "metadata": {"name": "bad"},
                "spec": {
                    "runtime": "python3.11",
                    "handler": "a.h",
                    "memorySize": 50,
                    "code": {"inline": {"a.py": ""}},
                },
            }
        )
    )
    code, _, err = await cluster.kubectl("apply", "-f", str(bad), check=False)
    assert code != 0
    assert "spec.memorySize" in err and "128" in err


def secret(name: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_service_account_tokens_and_secret_keys(cluster: Cluster) -> None:
    """In-cluster callers authenticate with their ServiceAccount token (TokenReview); key
    pairs live in Secrets; both are held to their policies."""
    import boto3
    from botocore.config import Config

    from klambda.controller.api.arn import account_for

    await cluster.kubectl("apply", "-f", str(REPO / "examples/greeter.yaml"))
    arn = f"arn:aws:lambda:us-east-1:{account_for('default')}:function:greeter"
    invoke_only = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}],
        }
    )
    secrets_path = path_for("", "v1", "secrets", "default")
    await cluster.client.create(
        secrets_path,
        secret("caller-policy", {"klambda.io/serviceaccount": "caller"}, {"policy": invoke_only}),
    )
    await cluster.client.create(
        secrets_path,
        secret(
            "ci-key",
            {"klambda.io/principal": "ci"},
            {
                "accessKeyId": "AKIAK8SSECRETKEY0001",
                "secretAccessKey": "k8s-secret-value",
                "policy": invoke_only,
            },
        ),
    )
    cluster.api.add_token(
        "sa-token", "system:serviceaccount:default:caller", ["system:serviceaccounts"]
    )
    url = f"{cluster.gateway_url}/2015-03-31/functions/greeter/invocations"

    async def call(token: str, name: str = "greeter") -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                url.replace("greeter", name),
                data=b'{"name": "pod"}',
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=40),
            ) as r,
        ):
            return r.status, (await r.json() if r.content_type == "application/json" else {})

    async def greeted() -> bool:
        status, body = await call("sa-token")
        return status == 200 and body.get("greeting") == "Bonjour, pod!"

    await eventually(greeted, timeout=60)
    status, _ = await call("not-a-token")
    assert status == 403
    await cluster.kubectl("apply", "-f", str(REPO / "examples/counter.yaml"))
    status, body = await call("sa-token", "counter")
    assert status == 403 and "not authorized" in json.dumps(body)

    client = boto3.client(
        "lambda",
        endpoint_url=cluster.gateway_url,
        region_name="us-east-1",
        aws_access_key_id="AKIAK8SSECRETKEY0001",
        aws_secret_access_key="k8s-secret-value",
        config=Config(retries={"max_attempts": 1}),
    )
    result = await asyncio.to_thread(client.invoke, FunctionName="greeter", Payload=b"{}")
    assert json.loads(result["Payload"].read())["greeting"] == "Bonjour, world!"


SLOW = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: slow}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  url: {authType: NONE}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            time.sleep(1.0)
            return {"pid": os.getpid()}
"""


async def test_busy_pods_scale_the_deployment_up(cluster: Cluster) -> None:
    manifest = cluster.tmp / "slow.yaml"
    manifest.write_text(SLOW)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def call() -> int:
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{cluster.gateway_url}/lambda-url/slow/", timeout=aiohttp.ClientTimeout(total=60)
            ) as r,
        ):
            return r.status

    await eventually(lambda: _ok(call), timeout=60)  # first pod up (scale from zero)
    statuses = await asyncio.gather(*(call() for _ in range(3)))
    assert statuses == [200, 200, 200]
    deployment = await cluster.client.get(
        path_for("apps", "v1", "deployments", "default", "fn-slow-latest")
    )
    assert deployment["spec"]["replicas"] >= 2


async def _ok(call: Any) -> bool:
    return bool(await call() == 200)
