"""One writer of a version's size: gateways report demand, the operator alone writes replicas,
with the resourceVersion it decided from, so a report and a provisioned change that cross each
other cannot lose either (the lost update of two writers of ``replicas``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from klambda.api import scaling
from klambda.controller.kube.builders import KubeSettings
from klambda.controller.kube.platform import KubePlatform
from klambda.gateway.demand import DemandReporter, annotation_key
from klambda.kube import names
from klambda.kube.client import KubeClient, KubeConfig
from klambda.kube.workloads import deployments_path
from tests.kube.double import KubeApiDouble

KEY = ("default", "busy", "$LATEST")
KEEP_WARM = 300.0


def deployment(replicas: int, provisioned: int) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": names.MANAGED_BY,
        names.FUNCTION_LABEL: "busy",
        names.VERSION_LABEL: "latest",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name("busy", "$LATEST"),
            "namespace": "default",
            "labels": labels,
            "annotations": {"klambda.io/provisioned": str(provisioned)},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "shim", "image": "klambda/shim"}]},
            },
        },
    }


async def test_a_demand_report_and_a_provisioned_change_that_cross_both_count(
    tmp_path: Path,
) -> None:
    async with KubeApiDouble() as api:
        client = KubeClient(KubeConfig.load(str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        try:
            await client.create(deployments_path("default"), deployment(2, 2))
            clock = time.time
            platform = KubePlatform(
                client, KubeSettings(), lambda key: None, keep_warm=KEEP_WARM, clock=clock
            )
            informer = asyncio.create_task(platform.deployments.run())
            await platform.deployments.synced.wait()
            informer.cancel()  # the operator's cache stays as it was: stale from here on
            await asyncio.gather(informer, return_exceptions=True)

            # a gateway whose pods are all busy asks for 4 ...
            gateway = DemandReporter(client, "gateway-a", KEEP_WARM, clock=clock)
            await gateway.want(KEY, 4)
            # ... while the operator, from its stale cache, lowers provisioned to 1
            await platform.provision(KEY, 1)

            path = deployments_path("default", names.deployment_name("busy", "$LATEST"))
            d = await client.get(path)
            assert d["spec"]["replicas"] == 4  # the report counted: nothing was lost
            annotations = d["metadata"]["annotations"]
            assert annotations["klambda.io/provisioned"] == "1"  # and so did the change
            assert annotations[annotation_key("gateway-a")]  # the report is still there

            # the gateway stops using it: once its report says so, back to provisioned
            idle = scaling.Demand(0, clock() - KEEP_WARM - 1, clock())
            await client.patch(
                path, {"metadata": {"annotations": {annotation_key("gateway-a"): idle.encode()}}}
            )
            platform.deployments.assume(await client.get(path))
            await platform.scale(KEY)
            assert (await client.get(path))["spec"]["replicas"] == 1
        finally:
            await client.close()


def test_gateway_names_make_valid_annotation_keys() -> None:
    assert annotation_key("klambda-gateway-7d9f-x2") == "demand.klambda.io/klambda-gateway-7d9f-x2"
    assert annotation_key("host name:42") == "demand.klambda.io/host-name-42"
    assert len(annotation_key("x" * 200).split("/", 1)[1]) == 63


async def test_observation_and_keep_warm_timer_come_from_the_reports(tmp_path: Path) -> None:
    """On Kubernetes what a version reports (busy, idle for) comes from the gateways' demand
    reports, and scale() says when the keep-warm period ends, so the operator reconciles then
    instead of polling."""
    async with KubeApiDouble() as api:
        client = KubeClient(KubeConfig.load(str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        try:
            now = 1_000_000.0
            platform = KubePlatform(
                client, KubeSettings(), lambda key: None, keep_warm=KEEP_WARM, clock=lambda: now
            )
            d = deployment(3, 0)
            report = scaling.Demand(3, now - 250.0, now - 5.0)
            d["metadata"]["annotations"][annotation_key("gateway-a")] = report.encode()
            created = await client.create(deployments_path("default"), d)
            platform.deployments.assume(created)
            seen = await platform.observe(KEY)
            assert seen is not None
            assert (seen.environments, seen.idle_seconds) == (3, 250.0)
            assert seen.busy == 0  # no pod is ready: nothing can be busy
            # the size holds while in use, and the next change is when keep-warm runs out
            # (in 50 s; the report itself would stop counting in 115 s)
            assert await platform.scale(KEY) == KEEP_WARM - 250.0 + 0.01
        finally:
            await client.close()
