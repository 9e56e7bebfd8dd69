"""The double's Python API: seeding and reading without HTTP, settling controllers, simulated
rollouts, the thread runner."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.kube.client import deployment
from tests.kube.double import ApiError, KubeApiDouble, ThreadedKubeApiDouble


async def test_seed_and_inspect_objects_without_http() -> None:
    async with KubeApiDouble() as api:
        created = api.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "seed"},
                "data": {"a": "1"},
            }
        )
        assert created["metadata"]["resourceVersion"] == str(api.resource_version)
        assert api.get("v1", "ConfigMap", "seed", "default") == created
        with pytest.raises(ApiError) as exists:
            api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seed"}})
        assert exists.value.code == 409
        await api.settle()
        accounts = api.objects("v1", "ServiceAccount")
        assert {a["metadata"]["namespace"] for a in accounts} == {
            "default",
            "kube-system",
            "kube-public",
            "kube-node-lease",
        }
        kubernetes = api.get("v1", "Service", "kubernetes", "default")
        assert kubernetes is not None and kubernetes["spec"]["clusterIP"] == "10.96.0.1"


async def test_simulated_rollouts_write_deployment_status() -> None:
    async with KubeApiDouble(simulate_rollouts=True) as api:
        api.create(deployment("web"))
        await api.settle()
        status = (api.get("apps/v1", "Deployment", "web", "default") or {})["status"]
        assert status["observedGeneration"] == 1
        assert (
            status["readyReplicas"] == status["availableReplicas"] == status["updatedReplicas"] == 1
        )
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Available": "True",
            "Progressing": "True",
        }


def test_threaded_double_serves_while_the_test_blocks() -> None:
    with ThreadedKubeApiDouble() as api:
        with urllib.request.urlopen(f"{api.url}/api/v1/namespaces/default") as reply:
            assert json.loads(reply.read())["metadata"]["name"] == "default"
        api.add_token("t", "alice", ["devs"])
        assert (
            api.call(lambda d: d.cluster.tokens.review({"token": "t"})["user"]["username"])
            == "alice"
        )
