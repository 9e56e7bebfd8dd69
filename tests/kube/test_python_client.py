"""The real ``kubernetes`` Python client against the double (synchronous, so the double runs in
a background thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.client import CRD_DIR, function
from tests.kube.double import ThreadedKubeApiDouble

kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture
def api_client(threaded_api: ThreadedKubeApiDouble, tmp_path: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    path = threaded_api.write_kubeconfig(tmp_path / "kubeconfig")
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


def install_crds(api_client: client.ApiClient, threaded_api: ThreadedKubeApiDouble) -> None:
    extensions = client.ApiextensionsV1Api(api_client)
    for path in sorted(CRD_DIR.glob("*.yaml")):
        extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    threaded_api.settle()


def test_typed_apis_conflicts_and_strategic_merge(api_client: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    created = core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"})
    )
    assert created.metadata.uid and created.metadata.creation_timestamp is not None
    created.data = {"a": "2"}
    core.replace_namespaced_config_map("cm", "default", created)
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cm", "default", created)
    assert stale.value.status == 409 and stale.value.reason == "Conflict"
    container = client.V1Container(
        name="app", image="app:1", env=[client.V1EnvVar(name="A", value="1")]
    )
    sidecar = client.V1Container(name="sidecar", image="proxy:1")
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[container, sidecar]),
            ),
        ),
    )
    apps.create_namespaced_deployment("default", deployment)
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}
            }
        }
    }
    patched = apps.patch_namespaced_deployment(
        "web", "default", patch
    )  # sent as a strategic merge patch
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["app", "sidecar"]
    assert [e.name for e in containers[0].env] == ["A", "B"]
    scaled = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3
    status = apps.read_namespaced_deployment_status("web", "default")
    assert status.metadata.generation == 3


def test_custom_objects(api_client: client.ApiClient, threaded_api: ThreadedKubeApiDouble) -> None:
    install_crds(api_client, threaded_api)
    custom = client.CustomObjectsApi(api_client)
    args = ("klambda.io", "v1alpha1", "default", "functions")
    created = custom.create_namespaced_custom_object(*args, function("hello"))
    assert created["spec"]["memorySize"] == 128
    patched = custom.patch_namespaced_custom_object(*args, "hello", {"spec": {"timeout": 10}})
    assert patched["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        *args, "hello", {"status": {"state": "Active", "observedGeneration": 2}}
    )
    assert status["status"]["state"] == "Active"
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(*args, function("bad", memorySize=50))
    assert invalid.value.status == 422
    assert "spec.memorySize in body should be greater than or equal to 128" in invalid.value.body
    listing = custom.list_namespaced_custom_object(*args, field_selector="metadata.name=hello")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["hello"]


def test_watch_stream_synthetic_added_resume_and_410(tmp_path: Path) -> None:
    with ThreadedKubeApiDouble(history_size=2) as api:
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(api.write_kubeconfig(tmp_path / "kc")),
            client_configuration=configuration,
        )
        with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
            events = list(
                watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1)
            )
            assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a")]
            assert isinstance(events[0]["object"], client.V1ConfigMap)
            rv = first.metadata.resource_version
            core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
            resumed = list(
                watch.Watch().stream(
                    core.list_namespaced_config_map,
                    "default",
                    resource_version=rv,
                    timeout_seconds=1,
                )
            )
            assert [(e["type"], e["object"].metadata.name) for e in resumed] == [("ADDED", "b")]
            for i in range(3):
                core.patch_namespaced_config_map("b", "default", {"data": {"i": str(i)}})
            with pytest.raises(ApiException) as gone:
                list(
                    watch.Watch().stream(
                        core.list_namespaced_config_map,
                        "default",
                        resource_version=rv,
                        timeout_seconds=1,
                    )
                )
            assert gone.value.status == 410


def test_events_are_shared_between_core_and_events_api(api_client: client.ApiClient) -> None:
    events_v1 = client.EventsV1Api(api_client)
    body: dict[str, Any] = {
        "metadata": {"name": "hello.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "klambda.io/controller",
        "reportingInstance": "controller-0",
        "action": "Reconcile",
        "reason": "Ready",
        "type": "Normal",
        "note": "function is ready",
        "regarding": {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": "Function",
            "name": "hello",
            "namespace": "default",
            "uid": "u1",
        },
    }
    events_v1.create_namespaced_event("default", body)
    core = client.CoreV1Api(api_client)
    found = core.list_namespaced_event(
        "default", field_selector="involvedObject.name=hello,involvedObject.kind=Function"
    )
    assert [(e.reason, e.message, e.involved_object.uid) for e in found.items] == [
        ("Ready", "function is ready", "u1")
    ]


def test_token_review_leases_and_retry_after(
    api_client: client.ApiClient, threaded_api: ThreadedKubeApiDouble
) -> None:
    threaded_api.add_token(
        "t0ken", "system:serviceaccount:klambda:gateway", ["system:serviceaccounts"]
    )
    auth = client.AuthenticationV1Api(api_client)
    review = auth.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token="t0ken"))
    )
    assert (
        review.status.authenticated
        and review.status.user.username == "system:serviceaccount:klambda:gateway"
    )
    leases = client.CoordinationV1Api(api_client)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="klambda-controller"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    mine = leases.create_namespaced_lease("default", lease)
    mine.spec.holder_identity = "b"
    leases.replace_namespaced_lease("klambda-controller", "default", mine)
    with pytest.raises(ApiException) as lost:
        leases.replace_namespaced_lease(
            "klambda-controller", "default", mine
        )  # stale: someone renewed
    assert lost.value.status == 409
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/klambda-controller"
    threaded_api.fail(429, path, method="GET")
    with pytest.raises(ApiException) as throttled:
        leases.read_namespaced_lease("klambda-controller", "default")
    assert throttled.value.status == 429
    # With Retry-After, urllib3 underneath the client retries 429/503 by itself (up to 3 times).
    threaded_api.fail(503, path, method="GET", retry_after=0)
    assert leases.read_namespaced_lease("klambda-controller", "default").spec.holder_identity == "b"
    gets = [r for r in threaded_api.requests if r.method == "GET" and r.path == path]
    assert len(gets) == 3
