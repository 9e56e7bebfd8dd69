"""Patch content types: merge, JSON patch, strategic merge (list merge keys, directives), and
server-side apply."""

from __future__ import annotations

import json

from tests.kube.client import FN_PATH, Kube, configmap, deployment, function

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CM = "/api/v1/namespaces/default/configmaps"


def two_containers() -> dict:
    return deployment(
        "web",
        [
            {
                "name": "app",
                "image": "app:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 8080}],
            },
            {"name": "sidecar", "image": "proxy:1"},
        ],
    )


async def test_strategic_merge_merges_containers_by_name(kube: Kube) -> None:
    await kube.post(DEPLOY, two_containers())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:2",
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                        }
                    ]
                }
            }
        }
    }
    reply = await kube.patch(f"{DEPLOY}/web", patch, "strategic")
    assert reply.status == 200, reply.body
    containers = reply.body["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]  # not replaced by a one-item list
    app = containers[0]
    assert app["image"] == "app:2"
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    as_merge = await kube.patch(f"{DEPLOY}/web", patch, "merge")
    assert [c["name"] for c in as_merge.body["spec"]["template"]["spec"]["containers"]] == [
        "app"
    ]  # merge patch replaces lists


async def test_strategic_merge_directives(kube: Kube) -> None:
    await kube.post(DEPLOY, two_containers())
    path = f"{DEPLOY}/web"
    deleted = await kube.patch(
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
        "strategic",
    )
    assert [c["name"] for c in deleted.body["spec"]["template"]["spec"]["containers"]] == ["app"]
    ports = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9090}]}]}
            }
        }
    }
    merged = await kube.patch(path, ports, "strategic")
    assert [
        p["containerPort"]
        for p in merged.body["spec"]["template"]["spec"]["containers"][0]["ports"]
    ] == [8080, 9090]
    replace = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "new", "image": "n:1"}, {"$patch": "replace"}]}
            }
        }
    }
    replaced = await kube.patch(path, replace, "strategic")
    assert [c["name"] for c in replaced.body["spec"]["template"]["spec"]["containers"]] == ["new"]
    order = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "new"}],
                    "containers": [{"name": "b", "image": "b:1"}],
                }
            }
        }
    }
    ordered = await kube.patch(path, order, "strategic")
    assert [c["name"] for c in ordered.body["spec"]["template"]["spec"]["containers"]] == [
        "b",
        "new",
    ]
    await kube.patch(path, {"metadata": {"finalizers": ["x/a", "x/b"]}}, "strategic")
    dropped = await kube.patch(
        path, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/a"]}}, "strategic"
    )
    assert dropped.body["metadata"]["finalizers"] == ["x/b"]
    map_replace = await kube.patch(
        path, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}, "strategic"
    )
    assert map_replace.body["metadata"]["labels"] == {"only": "this"}


async def test_merge_patch_null_deletes_and_json_patch_ops(kube: Kube) -> None:
    await kube.post(CM, {**configmap("a"), "data": {"k": "v", "drop": "me"}})
    merged = await kube.patch(f"{CM}/a", {"data": {"drop": None, "new": "1"}})
    assert merged.body["data"] == {"k": "v", "new": "1"}
    ops = [
        {"op": "add", "path": "/data/x", "value": "y"},
        {"op": "remove", "path": "/data/k"},
        {"op": "test", "path": "/data/new", "value": "1"},
    ]
    patched = await kube.patch(f"{CM}/a", ops, "json")
    assert patched.body["data"] == {"new": "1", "x": "y"}
    failing = await kube.patch(f"{CM}/a", [{"op": "test", "path": "/data/x", "value": "z"}], "json")
    assert failing.status == 422
    missing = await kube.patch(f"{CM}/a", [{"op": "remove", "path": "/data/nope"}], "json")
    assert missing.status == 422


async def test_custom_resources_refuse_strategic_merge(crds: Kube) -> None:
    await crds.post(FN_PATH, function("fn"))
    reply = await crds.patch(f"{FN_PATH}/fn", {"spec": {"timeout": 5}}, "strategic")
    assert reply.status == 415
    assert reply.body["reason"] == "UnsupportedMediaType"
    assert reply.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


async def test_server_side_apply_creates_updates_and_removes_owned_fields(kube: Kube) -> None:
    path = f"{CM}/applied"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied"},
        "data": {"a": "1", "b": "2"},
    }

    async def apply(doc: dict, manager: str = "helm") -> object:
        return await kube.request(
            "PATCH",
            path,
            raw=json.dumps(doc).encode(),
            content_type="application/apply-patch+yaml",
            params={"fieldManager": manager},
        )

    created = await apply(body)
    assert created.status == 201, created.body
    other = await kube.patch(path, {"data": {"c": "3"}})
    assert other.status == 200
    updated = await apply({**body, "data": {"a": "9"}})
    assert updated.body["data"] == {
        "a": "9",
        "c": "3",
    }  # b removed (owned by helm), c kept (not helm's)
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '10'\n"
    again = await kube.request(
        "PATCH",
        path,
        raw=yaml_body,
        content_type="application/apply-patch+yaml",
        params={"fieldManager": "helm"},
    )
    assert again.body["data"] == {"a": "10", "c": "3"}
    nameless = await kube.request(
        "PATCH", path, raw=yaml_body, content_type="application/apply-patch+yaml"
    )
    assert nameless.status == 422
    assert "fieldManager: Required value: is required for apply patch" in nameless.message


async def test_server_side_apply_merges_containers(kube: Kube) -> None:
    await kube.post(DEPLOY, two_containers())
    applied = deployment("web", [{"name": "app", "image": "app:3"}])
    reply = await kube.request(
        "PATCH",
        f"{DEPLOY}/web",
        raw=json.dumps(applied).encode(),
        content_type="application/apply-patch+yaml",
        params={"fieldManager": "tool", "force": "true"},
    )
    assert reply.status == 200, reply.body
    containers = reply.body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "app:3"),
        ("sidecar", "proxy:1"),
    ]


async def test_scale_subresource(kube: Kube) -> None:
    await kube.post(DEPLOY, deployment("web"))
    scale = await kube.get(f"{DEPLOY}/web/scale")
    assert scale.body["kind"] == "Scale" and scale.body["apiVersion"] == "autoscaling/v1"
    assert scale.body["spec"] == {"replicas": 1}
    assert scale.body["status"]["selector"] == "app=web"
    patched = await kube.patch(f"{DEPLOY}/web/scale", {"spec": {"replicas": 4}})
    assert patched.body["spec"]["replicas"] == 4
    dep = (await kube.get(f"{DEPLOY}/web")).body
    assert dep["spec"]["replicas"] == 4 and dep["metadata"]["generation"] == 2
    put = await kube.put(f"{DEPLOY}/web/scale", {**patched.body, "spec": {"replicas": 2}})
    assert put.body["spec"]["replicas"] == 2
    stale = await kube.put(f"{DEPLOY}/web/scale", {**patched.body, "spec": {"replicas": 1}})
    assert stale.status == 409
