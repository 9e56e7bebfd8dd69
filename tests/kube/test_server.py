"""Discovery, OpenAPI, content negotiation, Status shapes, TokenReview and injected faults."""

from __future__ import annotations

import re

import pytest

from tests.kube.client import Kube, configmap
from tests.kube.double import KubeApiDouble
from tests.kube.double.params import go_bool

CM = "/api/v1/namespaces/default/configmaps"
REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


def test_booleans_parse_like_go() -> None:
    for text in ("1", "t", "T", "true", "TRUE", "True"):
        assert go_bool(text) is True
    for text in ("0", "f", "F", "false", "FALSE", "False"):
        assert go_bool(text) is False
    with pytest.raises(ValueError, match="invalid syntax"):
        go_bool("yes")


async def test_version_and_discovery(kube: Kube) -> None:
    version = (await kube.get("/version")).body
    assert re.fullmatch(r"v\d+\.\d+\.\d+", version["gitVersion"])
    assert (version["major"], version["minor"]) == ("1", "32")
    assert (await kube.get("/api")).body["versions"] == ["v1"]
    groups = {g["name"]: g for g in (await kube.get("/apis")).body["groups"]}
    for name in (
        "apps",
        "events.k8s.io",
        "discovery.k8s.io",
        "networking.k8s.io",
        "coordination.k8s.io",
        "authentication.k8s.io",
        "apiextensions.k8s.io",
    ):
        assert groups[name]["preferredVersion"]["version"] == "v1"
    core = {r["name"]: r for r in (await kube.get("/api/v1")).body["resources"]}
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["namespaced"] is True
    assert core["namespaces"]["namespaced"] is False
    assert core["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert core["serviceaccounts/token"]["kind"] == "TokenRequest"
    apps = {r["name"]: r for r in (await kube.get("/apis/apps/v1")).body["resources"]}
    assert apps["deployments/scale"]["group"] == "autoscaling"
    reviews = (await kube.get("/apis/authentication.k8s.io/v1")).body["resources"]
    assert reviews[0]["verbs"] == ["create"]
    assert (await kube.get("/apis/nope.example.com/v1")).status == 404


async def test_openapi_v3_advertises_field_validation(crds: Kube) -> None:
    root = (await crds.get("/openapi/v3")).body["paths"]
    assert root["apis/klambda.io/v1alpha1"]["serverRelativeURL"].startswith(
        "/openapi/v3/apis/klambda.io/v1alpha1?hash="
    )
    doc = (await crds.get("/openapi/v3/apis/klambda.io/v1alpha1")).body
    operation = doc["paths"]["/apis/klambda.io/v1alpha1/namespaces/{namespace}/functions/{name}"][
        "patch"
    ]
    assert operation["x-kubernetes-group-version-kind"] == {
        "group": "klambda.io",
        "version": "v1alpha1",
        "kind": "Function",
    }
    assert "fieldValidation" in [p["name"] for p in operation["parameters"]]
    assert "io.klambda.v1alpha1.Function" in doc["components"]["schemas"]
    assert (await crds.get("/openapi/v2")).status == 404


async def test_errors_are_status_objects(kube: Kube) -> None:
    missing = await kube.get(f"{CM}/nope")
    assert missing.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "configmaps"},
        "code": 404,
    }
    unknown = await kube.get("/api/v1/namespaces/default/widgets")
    assert (unknown.status, unknown.message) == (
        404,
        "the server could not find the requested resource",
    )
    not_allowed = await kube.get(REVIEWS)
    assert (not_allowed.status, not_allowed.body["reason"]) == (405, "MethodNotAllowed")


def _pb(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (short values: a one-byte length)."""
    assert len(value) < 128
    return bytes([number << 3 | 2, len(value)]) + value


async def test_content_types(kube: Kube) -> None:
    as_yaml = await kube.request(
        "POST",
        CM,
        raw=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n",
        content_type="application/yaml",
    )
    assert as_yaml.status == 201
    protobuf = await kube.request(
        "POST", CM, raw=b"k8s\x00", content_type="application/vnd.kubernetes.protobuf"
    )
    assert (protobuf.status, protobuf.body["reason"]) == (415, "UnsupportedMediaType")
    # a ConfigMap as client-go's typed clients (Helm's release storage) send it
    meta = _pb(1, b"v1") + _pb(2, b"ConfigMap")
    body = _pb(1, _pb(1, b"pb")) + _pb(2, _pb(1, b"greeting") + _pb(2, b"hello"))
    typed = await kube.request(
        "POST",
        CM,
        raw=b"k8s\x00" + _pb(1, meta) + _pb(2, body),
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert typed.status == 201 and typed.body["data"] == {"greeting": "hello"}
    # its deletion, as Helm's uninstall sends it: DeleteOptions with a stale precondition
    options_meta = _pb(1, b"v1") + _pb(2, b"DeleteOptions")
    stale = _pb(2, _pb(2, b"1")) + _pb(4, b"Background")  # preconditions.resourceVersion
    refused = await kube.request(
        "DELETE",
        f"{CM}/pb",
        raw=b"k8s\x00" + _pb(1, options_meta) + _pb(2, stale),
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert refused.status == 409  # the precondition was read
    deleted = await kube.request(
        "DELETE",
        f"{CM}/pb",
        raw=b"k8s\x00" + _pb(1, options_meta) + _pb(2, _pb(4, b"Background")),
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert deleted.status == 200
    only_protobuf = await kube.request(
        "GET", CM, headers={"Accept": "application/vnd.kubernetes.protobuf"}
    )
    assert only_protobuf.status == 406
    preferring = await kube.request(
        "GET", CM, headers={"Accept": "application/vnd.kubernetes.protobuf, */*"}
    )
    assert preferring.status == 200 and preferring.headers["Content-Type"].startswith(
        "application/json"
    )
    bad_patch = await kube.request("PATCH", f"{CM}/y", raw=b"{}", content_type="application/json")
    assert bad_patch.status == 415
    kind_mismatch = await kube.post(CM, {**configmap("z"), "kind": "Secret"})
    assert kind_mismatch.status == 400


async def test_token_review(kube: Kube, api: KubeApiDouble) -> None:
    api.add_token(
        "s3cret", "system:serviceaccount:klambda:gateway", ["system:serviceaccounts"], uid="u-1"
    )

    async def review(token: str, audiences: list[str] | None = None) -> dict:
        spec = {"token": token, **({"audiences": audiences} if audiences else {})}
        reply = await kube.post(
            REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        )
        assert reply.status == 201
        return reply.body["status"]

    ok = await review("s3cret")
    assert ok["authenticated"] is True
    assert ok["user"] == {
        "username": "system:serviceaccount:klambda:gateway",
        "groups": ["system:serviceaccounts"],
        "uid": "u-1",
    }
    assert (await review("wrong"))["authenticated"] is False
    assert (await kube.get(REVIEWS)).status == 405


async def test_token_request_mints_tokens_token_review_accepts(kube: Kube) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gateway"}}
    assert (await kube.post("/api/v1/namespaces/default/serviceaccounts", account)).status == 201
    path = "/api/v1/namespaces/default/serviceaccounts/gateway/token"
    minted = await kube.post(
        path,
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": ["klambda"]},
        },
    )
    assert minted.status == 201
    token = minted.body["status"]["token"]
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["klambda"]},
    }
    status = (await kube.post(REVIEWS, body)).body["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:default:gateway"
    assert "system:serviceaccounts:default" in status["user"]["groups"]
    wrong_audience = {**body, "spec": {"token": token, "audiences": ["other"]}}
    assert (await kube.post(REVIEWS, wrong_audience)).body["status"]["authenticated"] is False
    missing = await kube.post(
        "/api/v1/namespaces/default/serviceaccounts/nobody/token", {"spec": {}}
    )
    assert missing.status == 404


async def test_injected_faults_and_request_log(kube: Kube, api: KubeApiDouble) -> None:
    api.fail(429, CM, method="POST", times=2, retry_after=3)
    first = await kube.post(CM, configmap("a"))
    assert (first.status, first.body["reason"], first.headers["Retry-After"]) == (
        429,
        "TooManyRequests",
        "3",
    )
    assert first.body["details"] == {"retryAfterSeconds": 3}
    assert (await kube.post(CM, configmap("a"))).status == 429
    assert (await kube.post(CM, configmap("a"))).status == 201
    api.fail(500, re.compile(r"/api/v1/namespaces/default/configmaps/.*"))
    assert (await kube.get(f"{CM}/a")).status == 500
    assert (await kube.get(f"{CM}/a")).status == 200
    posts = [r for r in api.requests if r.method == "POST" and r.path == CM]
    assert len(posts) == 3 and posts[0].content_type == "application/json"
