"""The Helm chart with real Helm (helm-sdkpy's Go library): it lints, installs on the API double
with default and non-default values, renders what production needs (least-privilege RBAC that
covers every kind, non-root read-only containers, Redis with a generated password that only
platform pods reach), and its schema refuses bad values. Skipped without helm-sdkpy
(``pip install --ignore-requires-python helm-sdkpy``; .ci/run installs it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from klambda.api.types import KINDS
from klambda.kube.client import KubeClient, KubeConfig, path_for
from tests.kube.double import KubeApiDouble

pytest.importorskip("helm_sdkpy", reason="helm-sdkpy is not installed")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "klambda"
NAMESPACE = "klambda-system"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Path]:
    """The API double and a kubeconfig for it."""
    async with KubeApiDouble() as double:
        yield double.write_kubeconfig(tmp_path / "kubeconfig")


class HelmRefused(Exception):
    pass


async def helm(*args: str) -> dict[str, Any]:
    """Runs tests/kube/helm_tool.py (Helm in a process of its own) without blocking the loop
    the API double serves on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.kube.helm_tool",
        *args,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "HELM_DRIVER"},  # Secrets
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    result: dict[str, Any] = json.loads(out)
    if process.returncode:
        raise HelmRefused(result["error"])
    return result


async def install(
    kubeconfig: Path,
    values: dict[str, Any] | None = None,
    action: str = "install",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    release = await helm(action, str(kubeconfig), NAMESPACE, str(chart), json.dumps(values or {}))
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def chart_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


async def test_the_chart_lints_clean() -> None:
    report = await helm("lint", str(CHART))
    severities = [m["Severity"] for m in report["Messages"]]
    assert report["Errors"] is None and all(s <= 1 for s in severities), report  # info only


async def test_default_values_install_a_platform(api: Path) -> None:
    objects = await install(api)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for wanted in [
        ("Deployment", "klambda-operator"),
        ("Deployment", "klambda-gateway"),
        ("Service", "klambda-gateway"),
        ("StatefulSet", "klambda-redis"),
        ("Secret", "klambda-redis"),
        ("NetworkPolicy", "klambda-redis"),
        ("ClusterRole", "klambda-operator"),
        ("ClusterRole", "klambda-gateway"),
    ]:
        assert wanted in kinds, wanted
    assert not any(k == "Ingress" or k == "HorizontalPodAutoscaler" for k, _ in kinds)
    client = KubeClient(KubeConfig.load(str(api)))
    try:  # on the API server, with the CRDs
        deployments = path_for("apps", "v1", "deployments", NAMESPACE)
        assert (await client.get(f"{deployments}/klambda-gateway"))["spec"]["replicas"] == 1
        crds = path_for("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        installed = {i["spec"]["names"]["plural"] for i in (await client.get(crds))["items"]}
        assert {k.plural for k in KINDS.values()} <= installed
    finally:
        await client.close()


async def test_every_container_is_non_root_read_only_and_bounded(api: Path) -> None:
    objects = await install(api)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]
    platform = [c for w in workloads for c in w["spec"]["template"]["spec"]["containers"]]
    tags = {c["image"] for c in platform if c["name"] != "redis"}
    assert tags == {f"ghcr.io/klambda/klambda:{chart_version()}"}  # the appVersion


async def test_redis_has_a_password_no_object_shows_and_admits_only_the_platform(
    api: Path,
) -> None:
    objects = await install(api)
    secret = named(objects, "Secret", "klambda-redis")
    assert len(secret["data"]["password"]) >= 40  # 32 random characters, base64
    gateway = named(objects, "Deployment", "klambda-gateway")["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    url = [a for a in container["args"] if a.startswith("--redis-url=")]
    assert url == [f"--redis-url=redis://:$(REDIS_PASSWORD)@klambda-redis.{NAMESPACE}.svc:6379/0"]
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "klambda-redis", "key": "password"}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "--replica-name=$(POD_NAME)" in container["args"]  # a pod's own name, each
    assert "--shared-concurrency" not in container["args"]  # one replica: no round trip
    redis = named(objects, "StatefulSet", "klambda-redis")["spec"]["template"]["spec"]
    assert "--appendonly" in redis["containers"][0]["args"]
    policy = named(objects, "NetworkPolicy", "klambda-redis")["spec"]
    admitted = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policy["ingress"][0]["from"]
    ]
    assert sorted(admitted) == ["gateway", "operator"]  # no function pod reaches Redis


async def test_rbac_covers_every_kind_and_grants_nothing_extra(api: Path) -> None:
    objects = await install(api)
    plurals = {k.plural for k in KINDS.values()}
    operator = named(objects, "ClusterRole", "klambda-operator")["rules"]
    gateway = named(objects, "ClusterRole", "klambda-gateway")["rules"]

    def resources(rules: list[dict[str, Any]], verb: str) -> set[str]:
        return {
            r
            for rule in rules
            if "klambda.io" in rule["apiGroups"] and verb in rule["verbs"]
            for r in rule["resources"]
        }

    assert plurals <= resources(operator, "watch") and plurals <= resources(gateway, "watch")
    assert {f"{p}/status" for p in plurals} <= resources(operator, "patch")
    assert not resources(gateway, "patch") and not resources(gateway, "create")  # reads only
    for rule in operator + gateway:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    lease = named(objects, "Role", "klambda-operator-lease")
    assert lease["metadata"].get("namespace", NAMESPACE) == NAMESPACE


async def test_non_default_values_external_redis_ingress_autoscaling_monitoring(
    api: Path,
) -> None:
    client = KubeClient(KubeConfig.load(str(api)))
    try:  # the Prometheus Operator's kind, as a cluster running it has
        await client.create(
            path_for("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            SERVICE_MONITOR_CRD,
        )
    finally:
        await client.close()
    values = {
        "image": {"tag": "9.9.9"},
        "redis": {
            "enabled": False,
            "external": {
                "url": "rediss://cache.internal:6380/2",
                "passwordSecret": {"name": "my-redis", "key": "secret"},
            },
        },
        "gateway": {
            "ingress": {"enabled": True, "host": "fn.example.org", "tlsSecret": "fn-tls"},
            "urlDomain": "lambda-url.fn.example.org",
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
            "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
        },
        "serviceMonitor": {"enabled": True},
    }
    objects = await install(api, values)
    assert valid(objects) >= 15
    kinds = {o["kind"] for o in objects}
    assert "StatefulSet" not in kinds and ("Secret", "klambda-redis") not in {
        (o["kind"], o["metadata"]["name"]) for o in objects
    }
    gateway = named(objects, "Deployment", "klambda-gateway")
    assert "replicas" not in gateway["spec"]  # the autoscaler's
    assert "--shared-concurrency" in gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/klambda/klambda:9.9.9"
    assert "--redis-url=rediss://:$(REDIS_PASSWORD)@cache.internal:6380/2" in container["args"]
    assert "--url-domain=lambda-url.fn.example.org" in container["args"]
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "my-redis", "key": "secret"}
    ingress = named(objects, "Ingress", "klambda-gateway")["spec"]
    assert [r["host"] for r in ingress["rules"]] == [
        "fn.example.org",
        "*.lambda-url.fn.example.org",  # host-form function URLs
    ]
    assert ingress["tls"][0]["secretName"] == "fn-tls"
    hpa = named(objects, "HorizontalPodAutoscaler", "klambda-gateway")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 6)
    assert named(objects, "PodDisruptionBudget", "klambda-gateway")["spec"]["minAvailable"] == 2
    assert named(objects, "ServiceMonitor", "klambda-gateway")["spec"]["endpoints"][0]["path"] == (
        "/metrics"
    )


BUILT_IN = (
    "v1",
    "apps/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
    "policy/v1",
    "autoscaling/v2",
)


def valid(objects: list[dict[str, Any]]) -> int:
    """Validates each built-in object against the Kubernetes 1.30 schemas (strict: an unknown
    field is an error); returns how many."""
    import kubernetes_validate

    checked = 0
    for obj in objects:
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, "1.30", strict=True)
            checked += 1
    return checked


async def test_every_rendered_object_is_valid_kubernetes_1_30(api: Path) -> None:
    assert valid(await install(api)) >= 15


async def test_helm_upgrade_rolls_the_gateway_and_keeps_the_redis_password(api: Path) -> None:
    """Helm keeps the release as a Secret (protobuf, which the double reads); an upgrade to
    three gateway replicas changes the Deployment and turns shared concurrency on, and the
    generated Redis password survives it (the chart looks the Secret up)."""
    first = await install(api)
    password = named(first, "Secret", "klambda-redis")["data"]["password"]
    upgraded = await install(api, {"gateway": {"replicas": 3}}, action="upgrade")
    assert named(upgraded, "Secret", "klambda-redis")["data"]["password"] == password
    client = KubeClient(KubeConfig.load(str(api)))
    try:
        deployments = path_for("apps", "v1", "deployments", NAMESPACE)
        gateway = await client.get(f"{deployments}/klambda-gateway")
        assert gateway["spec"]["replicas"] == 3
        args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--shared-concurrency" in args
        releases = await client.list(path_for("", "v1", "secrets", NAMESPACE), "owner=helm")
        versions = sorted(i["metadata"]["labels"]["version"] for i in releases["items"])
        assert versions == ["1", "2"]  # the release's history, as Helm keeps it
    finally:
        await client.close()


async def test_helm_uninstall_keeps_the_crds_and_the_redis_password(api: Path) -> None:
    """What docs/install-kubernetes.md says an uninstall leaves: the CRDs (Helm never deletes
    ``crds/``, so Functions and their pods stay) and the Redis password Secret (kept by its
    resource policy); everything else the chart made goes."""
    await install(api)
    await helm("uninstall", str(api), NAMESPACE)
    client = KubeClient(KubeConfig.load(str(api)))
    try:
        for group, plural in [
            ("apps", "deployments"),
            ("", "services"),
            ("", "serviceaccounts"),
            ("apps", "statefulsets"),
        ]:
            listing = await client.list(path_for(group, "v1", plural, NAMESPACE))
            left = [i["metadata"]["name"] for i in listing["items"]]
            assert not [n for n in left if n.startswith("klambda") and n != "default"], left
        roles = await client.list(path_for("rbac.authorization.k8s.io", "v1", "clusterroles"))
        assert not [r for r in roles["items"] if r["metadata"]["name"].startswith("klambda")]
        secrets = await client.list(path_for("", "v1", "secrets", NAMESPACE))
        assert [s["metadata"]["name"] for s in secrets["items"]] == ["klambda-redis"]
        crds = await client.list(
            path_for("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        )
        assert "functions.klambda.io" in {c["metadata"]["name"] for c in crds["items"]}
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"gateway": {"replicaz": 2}}, "replicaz"),  # an unknown key
        ({"gateway": {"replicas": "two"}}, "replicas"),  # a wrong type
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"redis": {"external": {"url": "redis://:pw@host:6379/0"}}}, "url"),  # no password in it
        # several gateways share their concurrency limits through Redis: none, no replicas
        ({"redis": {"enabled": False}, "gateway": {"replicas": 3}}, "concurrency limits in Redis"),
    ],
)
async def test_the_schema_refuses_bad_values(api: Path, values: dict[str, Any], words: str) -> None:
    with pytest.raises(HelmRefused) as refused:
        await install(api, values)
    assert words in str(refused.value)


def test_every_value_is_used_by_a_template() -> None:
    """One value, one setting: a value no template reads would be a setting that does
    nothing."""
    templates = "".join(p.read_text() for p in (CHART / "templates").iterdir())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node and path.split(".")[-1] not in ("resources", "images"):
            return [x for k, v in node.items() for x in leaves(v, f"{path}.{k}" if path else k)]
        return [path]

    unused = [
        p for p in leaves(values, "") if not re.search(rf"\.Values\.{re.escape(p)}\b", templates)
    ]
    assert unused == []


def test_the_values_reference_is_current() -> None:
    import runpy

    render = runpy.run_path(str(REPO / "charts" / "values_reference.py"))["render"]
    assert (REPO / "docs" / "reference" / "values.md").read_text() == render(), (
        "regenerate: python charts/values_reference.py > docs/reference/values.md"
    )


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "plural": "servicemonitors",
            "singular": "servicemonitor",
            "kind": "ServiceMonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_the_runtime_images_are_the_operators_defaults() -> None:
    """One source per fact: the chart's runtime images are KubeSettings' (a runtime the
    operator knows has a value, and the same image)."""
    from klambda.controller.kube.builders import KubeSettings

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["runtimes"]["images"] == KubeSettings().images
