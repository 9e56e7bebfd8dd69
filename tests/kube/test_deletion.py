"""Deletion: finalizers, deletionTimestamp, asynchronous garbage collection, propagation
policies, DeleteOptions, namespace termination."""

from __future__ import annotations

from typing import Any

from tests.kube.client import FN_PATH, Kube, configmap, function
from tests.kube.double import KubeApiDouble

CM = "/api/v1/namespaces/default/configmaps"


def owned(name: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block:
        ref["blockOwnerDeletion"] = True
    cm = configmap(name)
    cm["metadata"]["ownerReferences"] = [ref]
    return cm


async def test_delete_without_finalizers_is_immediate(kube: Kube) -> None:
    created = (await kube.post(CM, configmap("a"))).body
    reply = await kube.delete(f"{CM}/a")
    assert reply.status == 200
    assert reply.body["status"] == "Success"
    assert reply.body["details"] == {
        "name": "a",
        "kind": "configmaps",
        "uid": created["metadata"]["uid"],
    }
    assert (await kube.get(f"{CM}/a")).status == 404
    again = await kube.delete(f"{CM}/a")
    assert (again.status, again.message) == (404, 'configmaps "a" not found')


async def test_finalizers_hold_deletion_until_removed(crds: Kube) -> None:
    fn = function("fn")
    fn["metadata"]["finalizers"] = ["klambda.io/cleanup"]
    await crds.post(FN_PATH, fn)
    start = (await crds.get(FN_PATH)).body["metadata"]["resourceVersion"]
    deleting = await crds.delete(f"{FN_PATH}/fn")
    assert deleting.status == 200
    meta = deleting.body["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == 2  # once, when deletionTimestamp is first set
    assert (await crds.get(f"{FN_PATH}/fn")).status == 200
    added = await crds.patch(
        f"{FN_PATH}/fn", {"metadata": {"finalizers": ["klambda.io/cleanup", "x/other"]}}
    )
    assert added.status == 422
    assert (
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is "
        'being deleted, found new finalizers []string{"x/other"}' in added.message
    )
    again = await crds.delete(f"{FN_PATH}/fn")
    assert again.body["metadata"]["generation"] == 2
    done = await crds.patch(f"{FN_PATH}/fn", {"metadata": {"finalizers": None}})
    assert done.status == 200
    assert (await crds.get(f"{FN_PATH}/fn")).status == 404
    history = [e["type"] async for e in _take(crds.stream(FN_PATH, resourceVersion=start), 2)]
    assert history == ["MODIFIED", "DELETED"]


async def _take(stream: Any, n: int) -> Any:
    count = 0
    async for event in stream:
        yield event
        count += 1
        if count == n:
            return


async def test_background_garbage_collection_is_asynchronous(
    kube: Kube, api: KubeApiDouble
) -> None:
    owner = (await kube.post(CM, configmap("owner"))).body
    owner["apiVersion"], owner["kind"] = "v1", "ConfigMap"
    await kube.post(CM, owned("child", owner))
    await kube.post(CM, owned("grandchild", (await kube.get(f"{CM}/child")).body))
    assert (await kube.delete(f"{CM}/owner")).status == 200
    assert (await kube.get(f"{CM}/child")).status == 200  # not deleted inside the request
    await kube.wait_for(lambda: kube.get(f"{CM}/grandchild"), lambda r: r.status == 404)
    assert (await kube.get(f"{CM}/child")).status == 404


async def test_dangling_references_are_removed_when_other_owners_remain(kube: Kube) -> None:
    a = (await kube.post(CM, configmap("a"))).body
    b = (await kube.post(CM, configmap("b"))).body
    child = owned("child", {**a, "apiVersion": "v1", "kind": "ConfigMap"})
    child["metadata"]["ownerReferences"].append(
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": b["metadata"]["uid"]}
    )
    await kube.post(CM, child)
    await kube.delete(f"{CM}/a")
    reply = await kube.wait_for(
        lambda: kube.get(f"{CM}/child"), lambda r: len(r.body["metadata"]["ownerReferences"]) == 1
    )
    assert reply.body["metadata"]["ownerReferences"][0]["name"] == "b"


async def test_orphan_strips_owner_references(kube: Kube) -> None:
    owner = {
        **(await kube.post(CM, configmap("owner"))).body,
        "apiVersion": "v1",
        "kind": "ConfigMap",
    }
    await kube.post(CM, owned("child", owner))
    reply = await kube.delete(
        f"{CM}/owner", {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}
    )
    assert reply.body["metadata"]["finalizers"] == ["orphan"]
    await kube.wait_for(lambda: kube.get(f"{CM}/owner"), lambda r: r.status == 404)
    child = (await kube.get(f"{CM}/child")).body
    assert "ownerReferences" not in child["metadata"]


async def test_foreground_deletes_blocking_dependents_first(kube: Kube) -> None:
    owner = {
        **(await kube.post(CM, configmap("owner"))).body,
        "apiVersion": "v1",
        "kind": "ConfigMap",
    }
    blocking = owned("child", owner, block=True)
    blocking["metadata"]["finalizers"] = ["test/hold"]
    await kube.post(CM, blocking)
    reply = await kube.delete(f"{CM}/owner", propagationPolicy="Foreground")
    assert reply.body["metadata"]["finalizers"] == ["foregroundDeletion"]
    child = await kube.wait_for(
        lambda: kube.get(f"{CM}/child"), lambda r: "deletionTimestamp" in r.body["metadata"]
    )
    assert (await kube.get(f"{CM}/owner")).status == 200  # waits for the blocking dependent
    await kube.patch(f"{CM}/child", {"metadata": {"finalizers": None}})
    await kube.wait_for(lambda: kube.get(f"{CM}/owner"), lambda r: r.status == 404)
    assert child.status == 200


async def test_delete_options_preconditions_and_dry_run(kube: Kube) -> None:
    await kube.post(CM, configmap("a"))
    wrong = await kube.delete(f"{CM}/a", {"preconditions": {"uid": "nope"}})
    assert wrong.status == 409
    assert wrong.message.startswith(
        'Operation cannot be fulfilled on configmaps "a": Precondition failed: UID in '
        "precondition: nope"
    )
    dry = await kube.delete(f"{CM}/a", dryRun="All")
    assert dry.status == 200 and (await kube.get(f"{CM}/a")).status == 200
    bad = await kube.delete(f"{CM}/a", propagationPolicy="Sometimes")
    assert bad.status == 422


async def test_delete_collection_with_selector(kube: Kube) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        await kube.post(CM, configmap(name, tier=tier))
    reply = await kube.delete(CM, labelSelector="tier=web")
    assert reply.body["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in reply.body["items"]) == ["a", "b"]
    left = [i["metadata"]["name"] for i in (await kube.get(CM)).body["items"]]
    assert left == ["c"]


async def test_namespace_termination(kube: Kube) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    created = (await kube.post("/api/v1/namespaces", ns)).body
    assert created["status"] == {"phase": "Active"}
    assert created["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    await kube.post("/api/v1/namespaces/team/configmaps", configmap("a"))
    reply = await kube.delete("/api/v1/namespaces/team")
    assert reply.body["status"]["phase"] == "Terminating"
    refused = await kube.post("/api/v1/namespaces/team/configmaps", configmap("b"))
    assert refused.status == 403
    assert refused.body["reason"] == "Forbidden"
    assert (
        refused.message
        == 'configmaps "b" is forbidden: unable to create new content in namespace team '
        "because it is being terminated"
    )
    await kube.wait_for(lambda: kube.get("/api/v1/namespaces/team"), lambda r: r.status == 404)
    assert (await kube.get("/api/v1/namespaces/team/configmaps/a")).status == 404


async def test_custom_resource_owners_cascade_to_builtin_dependents(crds: Kube) -> None:
    fn = (await crds.post(FN_PATH, function("fn"))).body
    dependent = owned("fn-code", fn, block=True)
    await crds.post(CM, dependent)
    await crds.delete(f"{FN_PATH}/fn")
    await crds.wait_for(lambda: crds.get(f"{CM}/fn-code"), lambda r: r.status == 404)
