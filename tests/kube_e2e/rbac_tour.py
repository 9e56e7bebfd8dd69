"""A tour that makes the operator and the gateway use every permission the chart grants them,
and the check that they were refused nothing and granted nothing they did not use.

The tour is what users do after a first function: code too large for pod annotations (a code
ConfigMap, shared by two functions with the same code: an owner added by patch), a vpcConfig
egress allow-list (the version's NetworkPolicy), a Version and an Alias with provisioned
concurrency (a Deployment owned by the Version), a Queue, a Stream, a Schedule and an
EventSourceMapping (every kind's status), a spec change (Deployment and NetworkPolicy replaced),
a call with a bearer token (a TokenReview), and a deletion.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import aiohttp
import yaml

from klambda.kube import names
from klambda.kube.client import KubeClient, NotFound, path_for
from tests.kube.double.auth import UserInfo
from tests.kube.double.rbac import Attributes, Authorizer, Grant
from tests.kube_e2e.test_operator_e2e import eventually

NS = "default"
_CODE = "def handler(event, context):\n    return 'big'\n" + "# padding\n" * 4000
"""Over the 32 KiB that ride in pod annotations: the code goes into a ConfigMap."""


def _function(name: str, memory: int, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "memorySize": memory,
            "code": {"inline": {"app.py": _CODE}},
            "vpcConfig": {"egress": [{"ports": [{"port": port, "protocol": "TCP"}]}]},
        },
    }


def _objects() -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }

    return [
        _function("big", 128, 443),
        _function("big-twin", 128, 443),
        obj("Version", "hello-one", {"functionName": "hello"}),
        obj(
            "Alias",
            "hello-live",
            {"functionName": "hello", "name": "live", "functionVersion": "1"},
        ),
        obj("Queue", "tour", {}),
        obj("Stream", "tour", {"shards": 1}),
        obj(
            "Schedule",
            "tour",
            {"scheduleExpression": "rate(1 day)", "target": {"function": "hello"}},
        ),
        obj("EventSourceMapping", "tour", {"functionName": "hello", "source": {"queue": "tour"}}),
    ]


async def _apply(kubectl: list[str], objects: list[dict[str, Any]]) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [*kubectl, "apply", "-f", "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


async def rbac_tour(client: KubeClient, kubectl: list[str], gateway_url: str) -> None:
    await _apply(kubectl, _objects())
    kinds = ("functions", "versions", "aliases", "queues", "streams", "schedules")

    async def every_status_written() -> bool:
        for plural in (*kinds, "eventsourcemappings"):
            listing = await client.get(path_for("klambda.io", "v1alpha1", plural, NS))
            if not all(item.get("status") for item in listing["items"]):
                return False
        return True

    await eventually(every_status_written, 60, "every tour object's status written")
    deployments = path_for("apps", "v1", "deployments", NS)
    policies = path_for("networking.k8s.io", "v1", "networkpolicies", NS)
    big = names.deployment_name("big", "$LATEST")

    async def shared_code() -> bool:
        listing = await client.get(path_for("", "v1", "configmaps", NS))
        return any(len(c["metadata"].get("ownerReferences", [])) == 2 for c in listing["items"])

    await eventually(shared_code, 60, "the code ConfigMap owned by big and big-twin")
    await eventually(
        lambda: client.get(f"{deployments}/{names.deployment_name('hello', '1')}"),
        60,
        "version 1's Deployment",
    )

    await _apply(kubectl, [_function("big", 256, 8443)])  # a spec change: both replaced

    async def replaced() -> bool:
        policy = await client.get(f"{policies}/{big}")
        ports = policy["spec"]["egress"][0]["ports"]
        return bool(ports[0]["port"] == 8443)

    await eventually(replaced, 60, "big's egress policy replaced")
    await _call_with_a_bearer_token(gateway_url)

    await asyncio.to_thread(
        subprocess.run, [*kubectl, "delete", "function", "big"], capture_output=True
    )

    async def gone() -> bool:
        for path in (f"{deployments}/{big}", f"{policies}/{big}"):
            try:
                await client.get(path)
                return False
            except NotFound:
                pass
        return True

    await eventually(gone, 60, "big's Deployment and NetworkPolicy deleted")


async def _call_with_a_bearer_token(gateway_url: str) -> None:
    url = f"{gateway_url}/2015-03-31/functions/hello/invocations"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=b"{}", headers={"Authorization": "Bearer not-a-token"}) as r,
    ):
        assert r.status == 403, await r.text()  # reviewed, and refused: the TokenReview ran


def rbac_use(
    authorizer: Authorizer, user: str, namespace: str
) -> tuple[set[Attributes], set[Grant]]:
    """What ``user`` was refused, and which of its grants (cluster-wide and in ``namespace``)
    no request of it used."""
    mine = [d for d in authorizer.decisions if d.user == user]
    refused = {d.attributes for d in mine if d.grant is None}
    used = {d.grant for d in mine if d.grant is not None}
    granted = set(authorizer.grants_of(UserInfo(user), namespace))
    return refused, granted - used
