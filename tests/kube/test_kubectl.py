"""Real ``kubectl`` (1.32) against the double: apply, get, describe, wait, delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.kube.client import CRD_DIR, EXAMPLES
from tests.kube.double import ThreadedKubeApiDouble

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(
    not os.path.exists(KUBECTL), reason="kubectl is not installed (/usr/bin/kubectl)"
)
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(threaded_api: ThreadedKubeApiDouble, tmp_path: Path) -> Iterator[Kubectl]:
    env = {
        **os.environ,
        "KUBECONFIG": str(threaded_api.write_kubeconfig(tmp_path / "kubeconfig")),
        "KUBECACHEDIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }

    def run(
        *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    yield run


@pytest.fixture
def with_crds(kubectl: Kubectl) -> Kubectl:
    out = kubectl("apply", "-f", str(CRD_DIR)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/functions.klambda.io created" in out
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")  # a watch
    return kubectl


def test_apply_examples_get_and_describe(with_crds: Kubectl) -> None:
    kubectl = with_crds
    out = kubectl("apply", "-f", str(EXAMPLES)).stdout
    assert sorted(out.split("\n")[:-1]) == sorted(
        [
            *(
                f"function.klambda.io/{n} created"
                for n in ("counter", "greeter", "hello", "orders", "shout")
            ),
            "queue.klambda.io/orders created",
            "queue.klambda.io/orders-dlq created",
            "eventsourcemapping.klambda.io/orders created",
        ]
    )
    table = kubectl("get", "fn").stdout.splitlines()
    assert table[0].split() == ["NAME", "RUNTIME", "STATE", "READY", "URL", "AGE"]
    assert [row.split()[:2] for row in table[1:]] == [
        ["counter", "python3.11"],
        ["greeter", "python3.11"],
        ["hello", "python3.11"],
        ["orders", "python3.11"],
        ["shout", "provided.al2023"],
    ]
    queues = kubectl("get", "kq").stdout.splitlines()
    assert queues[0].split() == ["NAME", "FIFO", "MESSAGES", "IN-FLIGHT", "READY", "AGE"]
    wide = kubectl("get", "fn", "hello", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "RUNTIME", "STATE", "READY", "REASON", "URL", "AGE"]
    category = kubectl("get", "klambda").stdout
    assert "function.klambda.io/hello" in category
    described = kubectl("describe", "function", "hello").stdout
    for line in (
        "Name:         hello",
        "Namespace:    default",
        "API Version:  klambda.io/v1alpha1",
        "Kind:         Function",
        "Memory Size:        128",
    ):
        assert line in described
    assert "Says hello and echoes what it was sent" in described
    assert "Events:           <none>" in described
    as_json = json.loads(kubectl("get", "fn", "hello", "-o", "json").stdout)
    assert "kubectl.kubernetes.io/last-applied-configuration" in as_json["metadata"]["annotations"]
    assert as_json["spec"]["timeout"] == 3  # defaulted


def test_describe_shows_events_of_the_object(
    with_crds: Kubectl, threaded_api: ThreadedKubeApiDouble
) -> None:
    with_crds("apply", "-f", str(EXAMPLES / "hello.yaml"))
    hello = threaded_api.get("klambda.io/v1alpha1", "Function", "hello", "default")
    assert hello is not None
    regarding = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "name": "hello",
        "namespace": "default",
        "uid": hello["metadata"]["uid"],
    }
    threaded_api.create(
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "hello.1", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "klambda.io/controller",
            "reportingInstance": "controller-0",
            "action": "Reconcile",
            "type": "Normal",
            "reason": "FunctionReady",
            "note": "environment started",
            "regarding": regarding,
        }
    )
    described = with_crds("describe", "function", "hello").stdout
    events = described.split("Events:", 1)[1]
    assert "FunctionReady" in events and "environment started" in events


def test_invalid_manifests_are_rejected_with_the_crds_messages(
    with_crds: Kubectl, tmp_path: Path
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    manifest["spec"]["memorySize"] = 50
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = with_crds("apply", "-f", str(path), check=False)
    assert result.returncode != 0
    assert (
        'The Function "hello" is invalid: spec.memorySize: Invalid value: 50: '
        "spec.memorySize in body "
        "should be greater than or equal to 128"
    ) in result.stderr
    manifest["spec"]["memorySize"] = 256
    manifest["spec"]["memroySize"] = 256
    path.write_text(yaml.safe_dump(manifest))
    typo = with_crds("apply", "-f", str(path), check=False)
    assert 'strict decoding error: unknown field "spec.memroySize"' in typo.stderr
    del manifest["spec"]["memroySize"]
    manifest["spec"]["code"] = {"inline": {"app.py": "x"}, "zip": "code.zip"}
    path.write_text(yaml.safe_dump(manifest))
    cel = with_crds("apply", "-f", str(path), check=False)
    assert (
        'spec.code: Invalid value: "object": exactly one of inline, configMap, zip or image '
        "must be set" in cel.stderr
    )


def test_reapply_changed_manifest_is_a_three_way_merge(
    with_crds: Kubectl, threaded_api: ThreadedKubeApiDouble, tmp_path: Path
) -> None:
    kubectl = with_crds
    manifest = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    path = tmp_path / "hello.yaml"
    path.write_text(yaml.safe_dump(manifest))
    kubectl("apply", "-f", str(path))
    kubectl("label", "fn", "hello", "team=web")  # a change made outside the manifest
    assert kubectl("apply", "-f", str(path)).stdout.strip() == "function.klambda.io/hello unchanged"
    manifest["spec"]["timeout"] = 20
    del manifest["spec"]["url"]
    path.write_text(yaml.safe_dump(manifest))
    assert (
        kubectl("apply", "-f", str(path)).stdout.strip() == "function.klambda.io/hello configured"
    )
    live = json.loads(kubectl("get", "fn", "hello", "-o", "json").stdout)
    assert live["spec"]["timeout"] == 20
    assert "url" not in live["spec"]  # removed from the manifest: removed from the object
    assert live["metadata"]["labels"] == {"team": "web"}  # not in the manifest: kept
    assert live["metadata"]["generation"] == 2
    patches = [
        r
        for r in threaded_api.requests
        if r.method == "PATCH" and r.path.endswith("/functions/hello")
    ]
    assert patches[-1].content_type == "application/merge-patch+json"
    assert patches[-1].query == {
        "fieldManager": "kubectl-client-side-apply",
        "fieldValidation": "Strict",
    }


def test_builtin_kinds_get_strategic_three_way_merges(
    kubectl: Kubectl, threaded_api: ThreadedKubeApiDouble, tmp_path: Path
) -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(manifest))
    kubectl("apply", "-f", str(path))
    sidecar = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:1"}]}}}
    }
    kubectl("patch", "deployment", "web", "--type=strategic", "-p", json.dumps(sidecar))
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    path.write_text(yaml.safe_dump(manifest))
    assert "deployment.apps/web configured" in kubectl("apply", "-f", str(path)).stdout
    live = json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)
    containers = {c["name"]: c["image"] for c in live["spec"]["template"]["spec"]["containers"]}
    assert containers == {"app": "app:2", "sidecar": "proxy:1"}
    patch = [r for r in threaded_api.requests if r.method == "PATCH"][-1]
    assert patch.content_type == "application/strategic-merge-patch+json"
    kubectl("scale", "deployment", "web", "--replicas=3")
    assert (
        json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)["spec"]["replicas"]
        == 3
    )


def test_delete_and_not_found(with_crds: Kubectl) -> None:
    kubectl = with_crds
    kubectl("apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert (
        'function.klambda.io "hello" deleted'
        in kubectl("delete", "-f", str(EXAMPLES / "hello.yaml")).stdout
    )
    missing = kubectl("get", "fn", "hello", check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): functions.klambda.io "hello" not found' in missing.stderr
    # (``kubectl create configmap`` and other typed-client generators send protobuf: not served)
    configmap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n"
    assert "configmap/settings created" in kubectl("create", "-f", "-", stdin=configmap).stdout
    assert "configmap/settings" in kubectl("get", "cm", "-l", "!nothing", "-o", "name").stdout
