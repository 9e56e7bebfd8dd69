"""Create/update rules: resourceVersion, generation, conflicts, namespaces, names, clusterIP."""

from __future__ import annotations

import re

from tests.kube.client import FN_PATH, Kube, configmap, deployment, function
from tests.kube.double import KubeApiDouble

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
STALE = (
    'Operation cannot be fulfilled on {what} "{name}": the object has been modified; please apply '
    "your changes to the latest version and try again"
)


async def test_create_sets_server_fields_and_one_global_resource_version(kube: Kube) -> None:
    first = await kube.post(CM, configmap("a"))
    second = await kube.post(DEPLOY, deployment("web"))
    assert (first.status, second.status) == (201, 201)
    meta = first.body["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert isinstance(meta["resourceVersion"], str)
    assert int(second.body["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert "generation" not in meta  # ConfigMaps have none
    assert second.body["metadata"]["generation"] == 1
    listing = await kube.get(CM)
    assert int(listing.body["metadata"]["resourceVersion"]) >= int(
        second.body["metadata"]["resourceVersion"]
    )


async def test_stale_put_and_patch_get_409_conflict_with_the_real_message(kube: Kube) -> None:
    created = (await kube.post(CM, configmap("a"))).body
    updated = await kube.put(f"{CM}/a", {**created, "data": {"k": "2"}})
    assert updated.status == 200
    stale = await kube.put(f"{CM}/a", {**created, "data": {"k": "3"}})
    assert stale.status == 409
    assert stale.body["reason"] == "Conflict"
    assert stale.message == STALE.format(what="configmaps", name="a")
    assert stale.body["details"] == {"name": "a", "kind": "configmaps"}
    patch = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "data": {"k": "4"},
    }
    assert (await kube.patch(f"{CM}/a", patch)).status == 409
    unconditional = await kube.put(f"{CM}/a", {**configmap("a"), "data": {"k": "5"}})
    assert unconditional.status == 200  # built-in kinds allow updates without a resourceVersion


async def test_create_of_an_existing_name_is_409_already_exists(kube: Kube) -> None:
    await kube.post(DEPLOY, deployment("web"))
    again = await kube.post(DEPLOY, deployment("web"))
    assert again.status == 409
    assert again.body["reason"] == "AlreadyExists"
    assert again.message == 'deployments.apps "web" already exists'
    assert again.body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


async def test_custom_resource_put_without_resource_version_is_422(crds: Kube) -> None:
    created = (await crds.post(FN_PATH, function("fn"))).body
    del created["metadata"]["resourceVersion"]
    reply = await crds.put(f"{FN_PATH}/fn", created)
    assert reply.status == 422
    assert reply.message == (
        'Function.klambda.io "fn" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    stale = await crds.put(
        f"{FN_PATH}/fn", {**created, "metadata": {"name": "fn", "resourceVersion": "1"}}
    )
    assert stale.status == 409
    assert stale.message == STALE.format(what="functions.klambda.io", name="fn")


async def test_generation_moves_on_spec_changes_only(crds: Kube) -> None:
    fn = (await crds.post(FN_PATH, function("fn"))).body
    assert fn["metadata"]["generation"] == 1
    labelled = await crds.patch(f"{FN_PATH}/fn", {"metadata": {"labels": {"a": "b"}}})
    assert labelled.body["metadata"]["generation"] == 1
    changed = await crds.patch(f"{FN_PATH}/fn", {"spec": {"timeout": 30}})
    assert changed.body["metadata"]["generation"] == 2
    status = await crds.patch(f"{FN_PATH}/fn/status", {"status": {"state": "Active"}})
    assert status.body["metadata"]["generation"] == 2
    dep = (await crds.post(DEPLOY, deployment("web"))).body
    annotated = await crds.patch(f"{DEPLOY}/web", {"metadata": {"annotations": {"x": "y"}}})
    assert annotated.body["metadata"]["generation"] == dep["metadata"]["generation"] == 1
    scaled = await crds.patch(f"{DEPLOY}/web", {"spec": {"replicas": 3}})
    assert scaled.body["metadata"]["generation"] == 2


async def test_a_no_op_write_keeps_the_resource_version(kube: Kube) -> None:
    created = (await kube.post(CM, configmap("a"))).body
    same = await kube.put(f"{CM}/a", created)
    assert same.status == 200
    assert same.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    patched = await kube.patch(f"{CM}/a", {"data": {"k": "v"}})
    assert patched.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generate_name_namespace_rules_and_name_validation(kube: Kube) -> None:
    generated = await kube.post(
        CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}}
    )
    assert generated.status == 201
    assert re.fullmatch(r"job-[a-z0-9]{5}", generated.body["metadata"]["name"])
    mismatch = await kube.post(
        CM, {**configmap("b"), "metadata": {"name": "b", "namespace": "other"}}
    )
    assert (mismatch.status, mismatch.body["reason"]) == (400, "BadRequest")
    assert (
        mismatch.message
        == "the namespace of the provided object does not match the namespace sent on the request"
    )
    missing = await kube.post("/api/v1/namespaces/nowhere/configmaps", configmap("c"))
    assert (missing.status, missing.message) == (404, 'namespaces "nowhere" not found')
    bad = await kube.post(CM, configmap("Not_Valid"))
    assert bad.status == 422
    assert bad.message.startswith(
        'ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": a '
        "lowercase RFC 1123 subdomain"
    )
    nameless = await kube.post(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    assert (
        nameless.message
        == 'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is '
        "required"
    )


async def test_services_get_an_immutable_cluster_ip(kube: Kube) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]},
    }
    created = (await kube.post("/api/v1/namespaces/default/services", svc)).body
    ip = created["spec"]["clusterIP"]
    assert re.fullmatch(r"10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+", ip)
    assert created["spec"]["clusterIPs"] == [ip]
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    other = (
        await kube.post(
            "/api/v1/namespaces/default/services", {**svc, "metadata": {"name": "other"}}
        )
    ).body
    assert other["spec"]["clusterIP"] != ip
    moved = await kube.patch(
        "/api/v1/namespaces/default/services/web", {"spec": {"clusterIP": "10.96.9.9"}}
    )
    assert moved.status == 422


async def test_dry_run_validates_without_storing(kube: Kube, api: KubeApiDouble) -> None:
    rv = api.resource_version
    reply = await kube.post(CM, configmap("dry"), dryRun="All")
    assert reply.status == 201 and reply.body["metadata"]["uid"]
    assert (await kube.get(f"{CM}/dry")).status == 404
    assert api.resource_version == rv
    bad = await kube.post(CM, configmap("dry"), dryRun="Some")
    assert bad.status == 400


async def test_deployment_defaults_and_validation(kube: Kube) -> None:
    created = (await kube.post(DEPLOY, deployment("web"))).body
    spec = created["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "RollingUpdate"
    container = spec["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert created["status"] == {}
    wrong = deployment("bad")
    wrong["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    reply = await kube.post(DEPLOY, wrong)
    assert reply.status == 422
    assert "`selector` does not match template `labels`" in reply.message
