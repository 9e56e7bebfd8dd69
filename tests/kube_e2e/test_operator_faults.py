"""The operator under trouble: API failures, expired watches, and a leader that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.controller.kube.code_objects import ANNOTATED_CODE_LIMIT
from klambda.controller.kube.operator import OperatorSettings
from klambda.controller.kube.operator import run as run_operator
from klambda.controller.platform.redis_server import EmbeddedRedis
from klambda.gateway.source_stats import RedisSourceStats
from klambda.kube.client import KubeClient, KubeConfig, NotFound, path_for
from tests.kube.double import KubeApiDouble
from tests.kube_e2e.test_operator_e2e import REPO, eventually

pytestmark = pytest.mark.skipif(
    not (REPO / "charts/klambda/crds").is_dir(), reason="CRDs not generated"
)

FUNCTION = {
    "apiVersion": "klambda.io/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "PLACEHOLDER", "namespace": "default"},
    "spec": {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code": {"inline": {"app.py": "def handler(e, c):\n    return 1\n"}},
    },
}


def function(name: str) -> dict[str, Any]:
    return {**FUNCTION, "metadata": {**FUNCTION["metadata"], "name": name}}


def function_with_stored_code(name: str) -> dict[str, Any]:
    """Code too large to ride in the pod template: it goes into a code ConfigMap."""
    doc = copy.deepcopy(function(name))
    inline = doc["spec"]["code"]["inline"]
    inline["padding.py"] = "#" * (ANNOTATED_CODE_LIMIT + 1) + "\n"
    return dict(doc)


async def install_crds(api: KubeApiDouble) -> None:
    import yaml

    for path in sorted((REPO / "charts/klambda/crds").glob("*.yaml")):
        api.create(yaml.safe_load(path.read_text()))
    await api.settle()


async def deployment_of(client: KubeClient, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(
            path_for("apps", "v1", "deployments", "default", f"fn-{name}-latest")
        )
    except NotFound:
        return None


@contextlib.asynccontextmanager
async def operator(  # type: ignore[no-untyped-def]
    kubeconfig: Path, identity: str, stats: Any = None, **kw: Any
):
    stop = asyncio.Event()
    settings = OperatorSettings(
        kubeconfig=str(kubeconfig), identity=identity, resync_period=1.0, **kw
    )
    task = asyncio.create_task(run_operator(settings, stop, stats))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


async def test_api_errors_are_retried_until_the_function_is_deployed(tmp_path: Path) -> None:
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        try:
            # creating Deployments fails 8 times: more than the client's own retries
            api.fail(
                503,
                re.compile(r"/apis/apps/v1/namespaces/default/deployments$"),
                method="POST",
                times=8,
            )
            async with operator(kubeconfig, "op-a"):
                await client.create(
                    path_for("klambda.io", "v1alpha1", "functions", "default"), function("sturdy")
                )
                assert await eventually(lambda: deployment_of(client, "sturdy"), timeout=60)
            posts = [
                r for r in api.requests if r.method == "POST" and r.path.endswith("/deployments")
            ]
            assert len(posts) > 8
        finally:
            await client.close()


async def test_a_spec_the_crd_cannot_check_is_refused_in_status(tmp_path: Path) -> None:
    """Map keys are checked by the operator (a CRD rule over keys would exceed the API server's
    CEL budget): the Function is stored, marked InvalidSpec, and gets no Deployment."""
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        bad = function("badenv")
        bad["spec"] = {**bad["spec"], "environment": {"variables": {"1BAD": "x"}}}
        functions = path_for("klambda.io", "v1alpha1", "functions", "default")
        try:
            async with operator(kubeconfig, "op-a"):
                await client.create(functions, bad)
                await client.create(functions, function("fine"))
                assert await eventually(lambda: deployment_of(client, "fine"), timeout=60)

                async def ready() -> dict[str, Any] | None:
                    status = (await client.get(f"{functions}/badenv")).get("status", {})
                    return next(iter(status.get("conditions", [])), None)

                condition = await eventually(ready, timeout=30)
            assert condition["status"] == "False"
            assert condition["reason"] == "InvalidSpec"
            assert "spec.environment.variables.1BAD: key must match" in condition["message"]
            assert await deployment_of(client, "badenv") is None
        finally:
            await client.close()


async def test_event_source_mappings_get_status_from_the_operator(tmp_path: Path) -> None:
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        mappings = path_for("klambda.io", "v1alpha1", "eventsourcemappings", "default")
        try:
            async with operator(kubeconfig, "op-a"):
                await client.create(
                    path_for("klambda.io", "v1alpha1", "functions", "default"), function("eater")
                )
                queues = path_for("klambda.io", "v1alpha1", "queues", "default")
                for name, target in (
                    ("feeds-eater", "eater"),
                    ("feeds-nobody", "nobody"),
                    ("feeds-nothing", "eater"),
                ):
                    await client.create(
                        mappings,
                        {
                            "apiVersion": "klambda.io/v1alpha1",
                            "kind": "EventSourceMapping",
                            "metadata": {"name": name, "namespace": "default"},
                            "spec": {
                                "functionName": target,
                                "source": {"queue": "nothing" if "nothing" in name else "orders"},
                            },
                        },
                    )

                async def reason_is(name: str, wanted: str) -> bool:
                    status = (await client.get(f"{mappings}/{name}")).get("status", {})
                    conditions = status.get("conditions", [])
                    return bool(conditions) and conditions[0]["reason"] == wanted

                assert await eventually(lambda: reason_is("feeds-eater", "QueueNotFound"))
                queue = {"apiVersion": "klambda.io/v1alpha1", "kind": "Queue", "spec": {}}
                await client.create(queues, queue | {"metadata": {"name": "orders"}})
                # the Queue's arrival brings its mappings round
                assert await eventually(lambda: reason_is("feeds-eater", "Polling"))
                assert await eventually(lambda: reason_is("feeds-nobody", "FunctionNotFound"))
                assert await eventually(lambda: reason_is("feeds-nothing", "QueueNotFound"))
                queue_status = (await client.get(f"{queues}/orders")).get("status", {})
                assert queue_status["queueArn"].endswith(":orders")
                assert queue_status["conditions"][0]["reason"] == "QueueReady"
                status = (await client.get(f"{mappings}/feeds-eater"))["status"]
            assert status["state"] == "Enabled"
            assert status["eventSourceArn"].endswith(":orders")
            assert status["functionArn"].endswith(":function:eater")
        finally:
            await client.close()


async def test_an_operator_given_redis_fills_in_queue_and_stream_statuses(tmp_path: Path) -> None:
    """``klambda operator --redis-url``: what the queues and streams hold, as under klambda up;
    a Stream is declared for producers without any poller."""
    redis_server = await EmbeddedRedis.start(tmp_path / "redis")
    redis = aioredis.Redis.from_url(redis_server.url)
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        queues = path_for("klambda.io", "v1alpha1", "queues", "default")
        streams = path_for("klambda.io", "v1alpha1", "streams", "default")
        try:
            for i in range(3):
                await redis.xadd("klambda:queue:default:orders", {"body": f"m{i}"})
            async with operator(kubeconfig, "op-a", stats=RedisSourceStats(redis)):
                kind = {"apiVersion": "klambda.io/v1alpha1"}
                await client.create(
                    queues, kind | {"kind": "Queue", "metadata": {"name": "orders"}, "spec": {}}
                )
                await client.create(
                    streams,
                    kind
                    | {"kind": "Stream", "metadata": {"name": "clicks"}, "spec": {"shards": 2}},
                )

                async def counted() -> bool:
                    status = (await client.get(f"{queues}/orders")).get("status", {})
                    return status.get("approximateNumberOfMessages") == 3

                assert await eventually(counted)

                async def sharded() -> bool:
                    status = (await client.get(f"{streams}/clicks")).get("status", {})
                    return len(status.get("shards", [])) == 2

                assert await eventually(sharded)
            meta = await redis.hgetall("klambda:stream:default:clicks:meta")
            assert meta[b"shards"] == b"2"  # producers can find the shards
        finally:
            await client.close()
            await redis.aclose()
            await redis_server.stop()


async def test_code_shared_by_functions_outlives_each_of_them(tmp_path: Path) -> None:
    """Identical code is one ConfigMap with every user as an owner (added with an optimistic
    patch, retried on 409), so deleting one function leaves the others' code in place."""
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        functions = path_for("klambda.io", "v1alpha1", "functions", "default")
        configmaps = path_for("", "v1", "configmaps", "default")

        async def code_owners() -> list[str]:
            items = (await client.get(configmaps))["items"]
            code = [i for i in items if i["metadata"]["name"].startswith("klambda-code-")]
            assert len(code) <= 1, "identical code must be stored once"
            return (
                [r["name"] for r in code[0]["metadata"].get("ownerReferences", [])] if code else []
            )

        try:
            async with operator(kubeconfig, "op-a"):
                await client.create(functions, function_with_stored_code("first"))
                assert await eventually(lambda: deployment_of(client, "first"))
                # the second user's patch meets a conflict once, and reads again
                api.fail(
                    409,
                    re.compile(r"/api/v1/namespaces/default/configmaps/klambda-code-.*"),
                    method="PATCH",
                )
                await client.create(functions, function_with_stored_code("second"))
                assert await eventually(lambda: deployment_of(client, "second"))

                async def both() -> bool:
                    return sorted(await code_owners()) == ["first", "second"]

                assert await eventually(both)
                await client.delete(f"{functions}/first")
                await asyncio.sleep(1.0)
                await api.settle()
                assert await code_owners() == ["second"]  # still there for "second"
                await client.delete(f"{functions}/second")

                async def gone() -> bool:
                    await api.settle()
                    return await code_owners() == []

                assert await eventually(gone)
            patches = [r for r in api.requests if r.method == "PATCH" and "klambda-code-" in r.path]
            assert len(patches) >= 2  # the conflict, then the retry
        finally:
            await client.close()


async def test_expired_watches_are_relisted(tmp_path: Path) -> None:
    async with KubeApiDouble(history_size=3, watch_timeout=1) as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        try:
            async with operator(kubeconfig, "op-a"):
                await asyncio.sleep(1.0)
                for i in range(12):  # far more events than the history keeps
                    await client.create(
                        path_for("klambda.io", "v1alpha1", "functions", "default"),
                        function(f"churn-{i}"),
                    )
                for i in range(12):
                    assert await eventually(
                        lambda i=i: deployment_of(client, f"churn-{i}"), timeout=60
                    )
        finally:
            await client.close()


async def test_leader_failover(tmp_path: Path) -> None:
    """Two replicas, one leader; when it stops, the stand-by takes over and acts."""
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        lease_path = path_for("coordination.k8s.io", "v1", "leases", "default", "klambda-operator")
        fast = {"lease_duration": 2.0, "lease_renew": 0.3}
        functions = path_for("klambda.io", "v1alpha1", "functions", "default")

        async def holder() -> str | None:
            return (await client.get(lease_path))["spec"].get("holderIdentity")

        settings_a = OperatorSettings(
            kubeconfig=str(kubeconfig), identity="op-a", resync_period=1.0, **fast
        )
        a = asyncio.create_task(run_operator(settings_a, asyncio.Event()))
        try:
            assert await eventually(lambda: _is(holder, "op-a"))
            async with operator(kubeconfig, "op-b", **fast):
                await client.create(functions, function_with_stored_code("first"))
                assert await eventually(lambda: deployment_of(client, "first"))
                assert await holder() == "op-a"  # op-b waits its turn
                a.cancel()  # op-a stops; the stand-by takes over
                await asyncio.gather(a, return_exceptions=True)
                assert await eventually(lambda: _is(holder, "op-b"), timeout=20)
                await client.create(functions, function("second"))
                assert await eventually(lambda: deployment_of(client, "second"), timeout=30)
        finally:
            a.cancel()
            await asyncio.gather(a, return_exceptions=True)
            await client.close()


async def _is(getter: Any, value: str) -> bool:
    return bool(await getter() == value)


@pytest.mark.parametrize("name", ["klambda-functions", "klambda-functions-egress"])
async def test_a_deleted_functions_network_policy_is_made_again(tmp_path: Path, name: str) -> None:
    """Without them function pods take connections from anywhere that can route to them, and
    reach the platform's Redis."""
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        functions = path_for("klambda.io", "v1alpha1", "functions", "default")
        policy = path_for("networking.k8s.io", "v1", "networkpolicies", "default", name)
        try:
            async with operator(kubeconfig, "op-a"):
                await client.create(functions, function("guarded"))
                assert await eventually(lambda: client.get(policy))
                first = (await client.get(policy))["metadata"]["uid"]
                await client.delete(policy)

                async def again() -> bool:
                    return (await client.get(policy))["metadata"]["uid"] != first

                assert await eventually(again, timeout=10)
        finally:
            await client.close()


async def test_runtime_images_and_their_pull_policy_come_from_the_operators_settings(
    tmp_path: Path,
) -> None:
    """``klambda operator --runtime-image python3.11=... --runtime-pull-policy Always`` (the
    chart's runtimes values): function pods use them."""
    async with KubeApiDouble() as api:
        await install_crds(api)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        images = {"python3.11": "registry.example.com/runtime-python:3.11-custom"}
        try:
            async with operator(
                kubeconfig, "op-a", runtime_images=images, runtime_pull_policy="Always"
            ):
                await client.create(
                    path_for("klambda.io", "v1alpha1", "functions", "default"), function("pic")
                )
                found = await eventually(lambda: deployment_of(client, "pic"))
            (container,) = found["spec"]["template"]["spec"]["containers"]
            assert container["image"] == images["python3.11"]
            assert container["imagePullPolicy"] == "Always"
        finally:
            await client.close()
