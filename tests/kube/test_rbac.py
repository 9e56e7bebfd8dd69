"""The double authorizes callers with known tokens as the API server's RBAC does: bindings,
namespaces, subresources, resourceNames, blockOwnerDeletion, and Kubernetes' wording."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.kube.client import Kube, configmap
from tests.kube.double import KubeApiDouble

RBAC = "/apis/rbac.authorization.k8s.io/v1"
CM = "/api/v1/namespaces/default/configmaps"
USER = "system:serviceaccount:default:robot"


@pytest.fixture
async def robot(kube: Kube, api: KubeApiDouble) -> AsyncIterator[Kube]:
    """A client that presents the ServiceAccount ``default/robot``'s token."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}
    assert (await kube.post("/api/v1/namespaces/default/serviceaccounts", account)).status == 201
    minted = await kube.post("/api/v1/namespaces/default/serviceaccounts/robot/token", {"spec": {}})
    token = minted.body["status"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Kube(session, api.url)


async def _grant(kube: Kube, kind: str, rules: list[dict], namespace: str = "") -> None:
    """A Role (``namespace``) or ClusterRole named ``robot`` with ``rules``, bound to robot."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind}
    role["metadata"], role["rules"] = {"name": "robot"}, rules
    plural = "roles" if kind == "Role" else "clusterroles"
    assert (await kube.post(f"{RBAC}{scope}/{plural}", role)).status == 201
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{kind}Binding",
        "metadata": {"name": "robot"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "robot"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
    }
    assert (await kube.post(f"{RBAC}{scope}/{plural[:-1]}bindings", binding)).status == 201


async def test_nothing_is_allowed_without_a_binding(robot: Kube, kube: Kube) -> None:
    denied = await robot.get(CM)
    assert denied.status == 403
    assert denied.body["reason"] == "Forbidden"
    assert denied.message == (
        f'configmaps is forbidden: User "{USER}" cannot list resource "configmaps" in API '
        'group "" in the namespace "default"'
    )
    assert denied.body["details"] == {"kind": "configmaps"}
    assert (await robot.get("/api/v1")).status == 200  # discovery is open to every user
    assert (await kube.get(CM)).status == 200  # the admin token is not subject to RBAC


async def test_a_role_grants_its_verbs_in_its_namespace_only(robot: Kube, kube: Kube) -> None:
    await _grant(kube, "Role", [{"apiGroups": [""], "resources": ["configmaps"],
                                 "verbs": ["list", "create"]}], "default")  # fmt: skip
    assert (await robot.get(CM)).status == 200
    assert (await robot.post(CM, configmap("a"))).status == 201
    named = await robot.get(f"{CM}/a")
    assert named.status == 403
    assert named.message.startswith('configmaps "a" is forbidden: User')
    assert (await robot.get("/api/v1/namespaces/kube-system/configmaps")).status == 403
    everywhere = await robot.get("/api/v1/configmaps")
    assert everywhere.status == 403
    assert everywhere.message.endswith("at the cluster scope")


async def test_a_cluster_role_binding_grants_everywhere(robot: Kube, kube: Kube) -> None:
    await _grant(
        kube, "ClusterRole", [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]}]
    )
    assert (await robot.get("/apis/apps/v1/deployments")).status == 200
    assert (await robot.get("/apis/apps/v1/namespaces/kube-system/replicasets")).status == 200
    other_group = await robot.get("/api/v1/pods")
    assert other_group.status == 403


async def test_subresources_and_resource_names(robot: Kube, kube: Kube) -> None:
    await kube.post(CM, configmap("mine"))
    await kube.post(CM, configmap("theirs"))
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"],
         "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["patch"]},
    ]  # fmt: skip
    await _grant(kube, "Role", rules, "default")
    assert (await robot.get(f"{CM}/mine")).status == 200
    assert (await robot.get(f"{CM}/theirs")).status == 403
    assert (await robot.get(CM)).status == 403  # a list names nothing: resourceNames can't match
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    main = await robot.patch(path, {"metadata": {"labels": {"a": "b"}}})
    assert main.status == 403
    assert 'cannot patch resource "deployments" in API group "apps"' in main.message
    status = await robot.patch(f"{path}/status", {"status": {}})
    assert status.status == 404  # allowed: it got as far as finding no Deployment


async def test_block_owner_deletion_needs_update_on_the_owners_finalizers(
    robot: Kube, kube: Kube
) -> None:
    owner = (await kube.post(CM, configmap("owner"))).body
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]
    await _grant(kube, "Role", rules, "default")
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner"}
    reference["uid"] = owner["metadata"]["uid"]
    child = configmap("child")
    child["metadata"]["ownerReferences"] = [{**reference, "blockOwnerDeletion": True}]
    refused = await robot.post(CM, child)
    assert refused.status == 403
    assert "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't " \
        "set finalizers on" in refused.message  # fmt: skip
    assert 'cannot update resource "configmaps/finalizers"' in refused.message
    child["metadata"]["ownerReferences"] = [reference]  # without blockOwnerDeletion: allowed
    assert (await robot.post(CM, child)).status == 201


async def test_decisions_name_the_rule_that_allowed_them(
    robot: Kube, kube: Kube, api: KubeApiDouble
) -> None:
    await _grant(
        kube, "Role", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        "default",
    )  # fmt: skip
    await robot.get(CM)
    await robot.get(f"{CM}/x")
    allowed, refused = api.cluster.authorizer.decisions[-2:]
    assert allowed.grant is not None
    assert (allowed.grant.role, allowed.grant.verb) == ("Role/default/robot", "list")
    assert refused.grant is None and refused.attributes.verb == "get"


async def test_a_token_for_another_audience_is_not_accepted(kube: Kube, api: KubeApiDouble) -> None:
    api.add_token("for-klambda", USER, audiences=["klambda"])
    headers = {"Authorization": "Bearer for-klambda"}
    async with aiohttp.ClientSession(headers=headers) as session:
        reply = await Kube(session, api.url).get(CM)
    assert (reply.status, reply.body["reason"]) == (401, "Unauthorized")
