"""Lists: label and field selectors, pagination, resourceVersion parameters, Tables."""

from __future__ import annotations

import pytest

from tests.kube.client import FN_PATH, Kube, configmap, function

CM = "/api/v1/namespaces/default/configmaps"


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),  # includes d, which has no tier label
        ("tier in (web, db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("tier=web,env=prod", ["a"]),
        ("tier in (web),!env", ["b"]),
    ],
)
async def test_label_selectors(kube: Kube, selector: str, names: list[str]) -> None:
    await kube.post(CM, configmap("a", tier="web", env="prod"))
    await kube.post(CM, configmap("b", tier="web"))
    await kube.post(CM, configmap("c", tier="db"))
    await kube.post(CM, configmap("d"))
    reply = await kube.get(CM, labelSelector=selector)
    assert reply.status == 200, reply.body
    assert [i["metadata"]["name"] for i in reply.body["items"]] == names


async def test_field_selectors(kube: Kube) -> None:
    await kube.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
    )
    await kube.post(CM, configmap("a"))
    await kube.post("/api/v1/namespaces/other/configmaps", configmap("a"))
    everywhere = await kube.get("/api/v1/configmaps", fieldSelector="metadata.name=a")
    assert [i["metadata"]["namespace"] for i in everywhere.body["items"]] == ["default", "other"]
    not_default = await kube.get(
        "/api/v1/configmaps", fieldSelector="metadata.name==a,metadata.namespace!=default"
    )
    assert [i["metadata"]["namespace"] for i in not_default.body["items"]] == ["other"]
    unknown = await kube.get(CM, fieldSelector="data.k=v")
    assert (unknown.status, unknown.message) == (400, "field label not supported: data.k")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    await kube.post("/api/v1/namespaces/default/pods", pod)
    pending = await kube.get(
        "/api/v1/namespaces/default/pods", fieldSelector="status.phase=Pending"
    )
    assert [i["metadata"]["name"] for i in pending.body["items"]] == ["p"]


async def test_custom_resource_field_selector_errors(crds: Kube) -> None:
    reply = await crds.get(FN_PATH, fieldSelector="spec.runtime=python3.11")
    assert reply.status == 400
    assert (
        reply.message == '"spec.runtime" is not a known field selector: only "metadata.name", '
        '"metadata.namespace"'
    )


async def test_pagination_with_limit_and_continue(kube: Kube) -> None:
    for name in "abcde":
        await kube.post(CM, configmap(name))
    first = (await kube.get(CM, limit="2")).body
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    second = (await kube.get(CM, limit="2", **{"continue": first["metadata"]["continue"]})).body
    assert [i["metadata"]["name"] for i in second["items"]] == ["c", "d"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = (await kube.get(CM, limit="2", **{"continue": second["metadata"]["continue"]})).body
    assert [i["metadata"]["name"] for i in third["items"]] == ["e"]
    assert "continue" not in third["metadata"]
    bad = await kube.get(CM, **{"continue": "garbage!"})
    assert bad.status == 400


async def test_list_shapes_and_resource_versions(kube: Kube, crds: Kube) -> None:
    await kube.post(CM, configmap("a"))
    await crds.post(FN_PATH, function("fn"))
    listing = (await kube.get(CM)).body
    assert (listing["kind"], listing["apiVersion"]) == ("ConfigMapList", "v1")
    assert "kind" not in listing["items"][0]  # typed lists leave item kinds out
    functions = (await crds.get(FN_PATH)).body
    assert functions["kind"] == "FunctionList" and functions["items"][0]["kind"] == "Function"
    current = int(listing["metadata"]["resourceVersion"])
    future = await kube.get(CM, resourceVersion=str(current + 1000))
    assert (future.status, future.body["reason"]) == (504, "Timeout")
    exact_old = await kube.get(CM, resourceVersion="2", resourceVersionMatch="Exact")
    assert (exact_old.status, exact_old.body["reason"]) == (410, "Expired")
    assert (await kube.get(CM, resourceVersion="0")).status == 200


async def test_tables_for_kubectl_get(crds: Kube) -> None:
    await crds.post(FN_PATH, function("fn"))
    await crds.patch(
        f"{FN_PATH}/fn/status",
        {
            "status": {
                "state": "Active",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ok"}],
            }
        },
    )
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    reply = await crds.request("GET", FN_PATH, headers={"Accept": accept})
    table = reply.body
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Runtime", "State", "Ready", "Reason", "URL", "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[:6] == ["fn", "python3.11", "Active", "True", "Ok", ""]
    assert cells[6].endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    single = await crds.request("GET", f"{FN_PATH}/fn", headers={"Accept": accept})
    assert len(single.body["rows"]) == 1
    builtin = await crds.request("GET", "/api/v1/namespaces", headers={"Accept": accept})
    assert [c["name"] for c in builtin.body["columnDefinitions"]] == ["Name", "Age"]
