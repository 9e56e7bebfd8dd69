"""The gateway's view follows status: a version number the operator writes (a status-only
change) reaches the gateway's routes by itself, with no other change to the function."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from klambda.api.objects import parse_object
from klambda.api.world import RouteContext
from klambda.gateway.kube_view import KubeView
from klambda.gateway.routing import RoutingTable
from klambda.kube.client import KubeClient, KubeConfig, path_for
from tests.kube.double import KubeApiDouble
from tests.kube_e2e.test_operator_faults import FUNCTION, install_crds

VERSIONS = path_for("klambda.io", "v1alpha1", "versions", "default")
FUNCTIONS = path_for("klambda.io", "v1alpha1", "functions", "default")


async def test_a_published_version_reaches_the_route_from_its_status(tmp_path: Path) -> None:
    async with KubeApiDouble() as api:
        await install_crds(api)
        client = KubeClient(KubeConfig.load(str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        table = RoutingTable()
        view = KubeView(client, table, RouteContext("us-east-1", "http://gw"))
        try:
            await view.start()
            fn = copy.deepcopy(FUNCTION)
            fn["metadata"]["name"] = "fn"
            await client.create(FUNCTIONS, fn)
            version = {
                "apiVersion": "klambda.io/v1alpha1",
                "kind": "Version",
                "metadata": {"name": "fn-v1", "namespace": "default"},
                "spec": {"functionName": "fn"},
            }
            await client.create(VERSIONS, version)
            await asyncio.sleep(1.0)  # the gateway has seen the Version: it has no number yet
            route = table.get("default", "fn")
            assert route is not None and "1" not in route.versions
            spec = parse_object(fn).manifest["spec"]
            status = {"version": "1", "configHash": "h", "codeSha256": "c", "functionSpec": spec}
            await client.patch(f"{VERSIONS}/fn-v1/status", {"status": status})

            def numbered() -> bool:
                route = table.get("default", "fn")
                return route is not None and "1" in route.versions

            for _ in range(100):  # 10 s at most
                if numbered():
                    break
                await asyncio.sleep(0.1)
            assert numbered()
        finally:
            await view.stop()
            await client.close()
