"""CRDs and custom resources: Established, status subresource, pruning, defaults, validation,
CEL (klambda's own CRDs from charts/klambda/crds)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.client import FN_PATH, Kube, deployment, function

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
VERSIONS = "/apis/klambda.io/v1alpha1/namespaces/default/versions"
ALIASES = "/apis/klambda.io/v1alpha1/namespaces/default/aliases"


def widget_crd(subresources: dict[str, Any] | None = None, **schema: Any) -> dict[str, Any]:
    root = schema or {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
    }
    if subresources is not None:
        version["subresources"] = subresources
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [version],
        },
    }


async def test_crds_become_established_and_their_kinds_are_discovered(kube: Kube) -> None:
    created = await kube.post(CRD_PATH, widget_crd())
    assert created.status == 201
    assert created.body["status"]["conditions"] == []  # the establishing controller is asynchronous
    established = await kube.wait_for(
        lambda: kube.get(f"{CRD_PATH}/widgets.example.com"),
        lambda r: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in r.body["status"]["conditions"]
        ),
    )
    conditions = {c["type"]: c for c in established.body["status"]["conditions"]}
    assert conditions["NamesAccepted"]["status"] == "True"
    assert established.body["status"]["acceptedNames"]["kind"] == "Widget"
    assert established.body["status"]["storedVersions"] == ["v1"]
    groups = (await kube.get("/apis")).body["groups"]
    assert {"groupVersion": "example.com/v1", "version": "v1"} in [
        v for g in groups for v in g["versions"]
    ]
    resources = (await kube.get("/apis/example.com/v1")).body["resources"]
    assert (
        resources[0]["name"] == "widgets"
        and resources[0]["kind"] == "Widget"
        and resources[0]["namespaced"]
    )


async def test_crds_must_be_structural(kube: Kube) -> None:
    untyped = widget_crd(
        type="object", properties={"spec": {"properties": {"size": {"type": "integer"}}}}
    )
    reply = await kube.post(CRD_PATH, untyped)
    assert reply.status == 422
    assert reply.message == (
        'CustomResourceDefinition.apiextensions.k8s.io "widgets.example.com" is invalid: '
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: "
        "must not be empty for specified object fields"
    )
    schemaless = widget_crd()
    del schemaless["spec"]["versions"][0]["schema"]
    assert "schemas are required" in (await kube.post(CRD_PATH, schemaless)).message
    bad_rule = widget_crd(
        type="object", **{"x-kubernetes-validations": [{"rule": "self.spec.size >"}]}
    )
    assert "compilation failed" in (await kube.post(CRD_PATH, bad_rule)).message


async def test_status_subresource_splits_writes(crds: Kube) -> None:
    sent = {**function("fn"), "status": {"state": "Active"}}
    created = (await crds.post(FN_PATH, sent)).body
    assert "status" not in created  # dropped on create
    with_status = await crds.put(
        f"{FN_PATH}/fn/status",
        {**created, "status": {"state": "Active"}, "spec": {**created["spec"], "timeout": 99}},
    )
    assert with_status.body["status"]["state"] == "Active"
    assert with_status.body["spec"]["timeout"] == 3  # /status ignores everything else
    main = await crds.patch(
        f"{FN_PATH}/fn", {"status": {"state": "Failed"}, "spec": {"timeout": 9}}
    )
    assert main.body["status"]["state"] == "Active"  # the main endpoint keeps the old status
    assert main.body["spec"]["timeout"] == 9
    dep = (await crds.post("/apis/apps/v1/namespaces/default/deployments", deployment("web"))).body
    ignored = await crds.patch(
        "/apis/apps/v1/namespaces/default/deployments/web", {"status": {"replicas": 5}}
    )
    assert ignored.body["status"] == dep["status"] == {}
    written = await crds.patch(
        "/apis/apps/v1/namespaces/default/deployments/web/status", {"status": {"replicas": 5}}
    )
    assert written.body["status"] == {"replicas": 5}


async def test_without_status_subresource_status_is_an_ordinary_field(kube: Kube) -> None:
    await kube.post(CRD_PATH, widget_crd())
    path = "/apis/example.com/v1/namespaces/default/widgets"
    await kube.wait_for(lambda: kube.get(path), lambda r: r.status == 200)
    created = await kube.post(
        path,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"a": 1},
        },
    )
    assert created.body["status"] == {"a": 1}
    patched = await kube.patch(f"{path}/w", {"status": {"a": 2}})
    assert patched.body["status"] == {"a": 2}
    assert (
        patched.body["metadata"]["generation"] == 2
    )  # no status subresource: status changes count
    assert (await kube.get(f"{path}/w/status")).status == 404


async def test_pruning_defaulting_and_field_validation(crds: Kube) -> None:
    sent = function(
        "fn",
        extra="dropped",
        url={"authType": "NONE", "unknown": 1},
        policy={"Statement": [{"Effect": "Allow"}]},
    )
    reply = await crds.post(FN_PATH, sent)
    assert reply.status == 201
    spec = reply.body["spec"]
    assert "extra" not in spec and "unknown" not in spec["url"]
    assert spec["policy"] == {
        "Statement": [{"Effect": "Allow"}]
    }  # x-kubernetes-preserve-unknown-fields
    assert (spec["memorySize"], spec["timeout"], spec["ephemeralStorage"], spec["description"]) == (
        128,
        3,
        512,
        "",
    )
    assert spec["url"]["invokeMode"] == "BUFFERED"
    warnings = reply.headers.getall("Warning")
    assert '299 - "unknown field \\"spec.extra\\""' in warnings
    strict = await crds.post(FN_PATH, function("fn2", extra="x"), fieldValidation="Strict")
    assert (strict.status, strict.body["reason"]) == (400, "BadRequest")
    assert strict.message == 'strict decoding error: unknown field "spec.extra"'
    ignore = await crds.post(FN_PATH, function("fn3", extra="x"), fieldValidation="Ignore")
    assert ignore.status == 201 and "Warning" not in ignore.headers


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"memorySize": 50},
            "spec.memorySize: Invalid value: 50: spec.memorySize in body should be "
            "greater than or equal to 128",
        ),
        (
            {"timeout": 901},
            "spec.timeout: Invalid value: 901: spec.timeout in body should be less than "
            "or equal to 900",
        ),
        (
            {"runtime": "python2.7"},
            'spec.runtime: Unsupported value: "python2.7": supported values: '
            '"python3.10", "python3.11", "python3.12", "python3.13", "python3.14", '
            '"provided", "provided.al2", "provided.al2023"',
        ),
        (
            {"handler": "a b"},
            "spec.handler: Invalid value: \"a b\": spec.handler in body should match '^[^\\s]+$'",
        ),
        ({"description": "x" * 300}, "spec.description: Too long: may not be longer than 256"),
        (
            {"memorySize": "big"},
            'spec.memorySize: Invalid value: "big": spec.memorySize in body must be of '
            'type integer: "string"',
        ),
        ({"url": {}}, "spec.url.authType: Required value"),
        (
            {"url": {"authType": "NONE", "cors": {"allowMethods": ["GET"] * 7}}},
            "spec.url.cors.allowMethods: Too many: 7: must have at most 6 items",
        ),
        (
            {"code": {"zip": ""}},
            'spec.code.zip: Invalid value: "": spec.code.zip in body should be at least '
            "1 chars long",
        ),
    ],
)
async def test_openapi_validation_messages(crds: Kube, spec: dict[str, Any], message: str) -> None:
    reply = await crds.post(FN_PATH, function("fn", **spec))
    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"
    assert message in reply.message
    assert reply.message.startswith('Function.klambda.io "fn" is invalid: ')
    field = message.split(":")[0]
    assert field in [c["field"] for c in reply.body["details"]["causes"]]
    assert (
        reply.body["details"]["group"] == "klambda.io"
        and reply.body["details"]["kind"] == "Function"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"code": {}},
            'spec.code: Invalid value: "object": exactly one of inline, configMap, zip or image '
            "must be set",
        ),
        (
            {"code": {"inline": {"a.py": ""}, "zip": "x.zip"}},
            "exactly one of inline, configMap, zip or image must be set",
        ),
        (
            {"handler": None, "runtime": "python3.12"},
            'spec: Invalid value: "object": handler is required unless the runtime is provided',
        ),
        (
            {"code": {"image": "registry.example.com/app:1"}},  # function() sets a runtime
            "runtime is required, except with code.image (where the image is the runtime)",
        ),
        (
            {"imageConfig": {"command": ["app.handler"]}},
            "imageConfig applies only to code.image",
        ),
        (
            {"environment": {"variables": {f"V{i}": "" for i in range(257)}}},
            "spec.environment.variables: Too many: 257: must have at most 256 items",
        ),
    ],
)
async def test_cel_rules_of_the_function_crd(
    crds: Kube, spec: dict[str, Any], message: str
) -> None:
    manifest = function("fn", **spec)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    reply = await crds.post(FN_PATH, manifest)
    assert reply.status == 422, reply.body
    assert message in reply.message


async def test_cel_rules_that_pass(crds: Kube) -> None:
    provided = function(
        "shout",
        runtime="provided.al2023",
        code={"inline": {"bootstrap": "#!/bin/sh", "lib/x.py": ""}},
    )
    del provided["spec"]["handler"]
    assert (await crds.post(FN_PATH, provided)).status == 201
    configmap_code = function(
        "cm", code={"configMap": "my-code"}, environment={"variables": {"GREETING": "hi"}}
    )
    assert (await crds.post(FN_PATH, configmap_code)).status == 201


async def test_root_rules_see_metadata_name(crds: Kube) -> None:
    long_name = function("a" * 64)
    reply = await crds.post(FN_PATH, long_name)
    assert reply.status == 422
    assert (
        '<nil>: Invalid value: "object": function names are at most 63 characters' in reply.message
    )
    dashes = await crds.post(FN_PATH, function("a--b"))
    assert "function names must not contain '--'" in dashes.message
    numeric_alias = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Alias",
        "metadata": {"name": "123"},
        "spec": {"functionName": "fn", "functionVersion": "1"},
    }
    reply = await crds.post(ALIASES, numeric_alias)
    assert (
        "an alias name cannot be a number (numbers name versions): set spec.name" in reply.message
    )
    numeric_alias["spec"]["name"] = "live"
    assert (await crds.post(ALIASES, numeric_alias)).status == 201


async def test_alias_rules_including_evaluation_errors(crds: Kube) -> None:
    def alias(name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": "Alias",
            "metadata": {"name": name},
            "spec": {"functionName": "fn", **spec},
        }

    weights = await crds.post(
        ALIASES,
        alias("a", functionVersion="1", routingConfig={"additionalVersionWeights": {"2": 1.5}}),
    )
    assert "weights must be greater than 0 and less than 1" in weights.message
    same = await crds.post(
        ALIASES,
        alias("b", functionVersion="2", routingConfig={"additionalVersionWeights": {"2": 0.5}}),
    )
    assert "the additional version must differ from functionVersion" in same.message
    latest = await crds.post(
        ALIASES, alias("c", functionVersion="$LATEST", provisionedConcurrency=2)
    )
    assert "provisioned concurrency needs a published version, not $LATEST" in latest.message
    empty = await crds.post(ALIASES, alias("d", functionVersion="1", routingConfig={}))
    assert (
        'spec.routingConfig: Invalid value: "object": no such key: '
        "additionalVersionWeights evaluating rule: weights must be greater than 0 and "
        "less than 1" in empty.message
    )
    ok = await crds.post(
        ALIASES,
        alias("e", functionVersion="1", routingConfig={"additionalVersionWeights": {"2": 0.25}}),
    )
    assert ok.status == 201, ok.body


async def test_transition_rules_use_old_self(crds: Kube) -> None:
    version = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Version",
        "metadata": {"name": "fn-1"},
        "spec": {"functionName": "fn", "description": "first"},
    }
    assert (await crds.post(VERSIONS, version)).status == 201  # no oldSelf on create: rule skipped
    changed = await crds.patch(f"{VERSIONS}/fn-1", {"spec": {"description": "second"}})
    assert changed.status == 422
    assert (
        'spec: Invalid value: "object": a Version is immutable (only '
        "provisionedConcurrency may change): publish a new one" in changed.message
    )
    allowed = await crds.patch(f"{VERSIONS}/fn-1", {"spec": {"provisionedConcurrency": 2}})
    assert allowed.status == 200


async def test_type_errors_block_cel(crds: Kube) -> None:
    reply = await crds.post(FN_PATH, function("fn", code={"inline": "not-a-map"}))
    assert reply.status == 422
    assert "spec.code.inline in body must be of type object" in reply.message
    assert "some validation rules were not checked because the object was invalid" in reply.message


async def test_deleting_a_crd_removes_its_resources_and_kinds(crds: Kube) -> None:
    await crds.post(FN_PATH, function("fn"))
    assert (await crds.delete(f"{CRD_PATH}/functions.klambda.io")).status == 200
    await crds.wait_for(
        lambda: crds.get(f"{CRD_PATH}/functions.klambda.io"), lambda r: r.status == 404
    )
    assert (await crds.get(FN_PATH)).status == 404
    names = [r["name"] for r in (await crds.get("/apis/klambda.io/v1alpha1")).body["resources"]]
    assert "functions" not in names and "versions" in names


ESMS = "/apis/klambda.io/v1alpha1/namespaces/default/eventsourcemappings"
QUEUES = "/apis/klambda.io/v1alpha1/namespaces/default/queues"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {}}, "exactly one of queue or stream must be set"),
        ({"source": {"queue": "q", "stream": "s"}}, "exactly one of queue or stream must be set"),
        ({"source": {"stream": "s"}}, "a stream's mapping needs startingPosition"),
        (
            {"source": {"stream": "s"}, "startingPosition": "AT_TIMESTAMP"},
            "startingPosition AT_TIMESTAMP needs startingPositionTimestamp",
        ),
        (
            {"source": {"queue": "q"}, "parallelizationFactor": 2},
            "a queue's mapping takes none of the stream settings",
        ),
        (
            {"source": {"queue": "q"}, "batchSize": 50},
            "a queue's batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
        ),
        (
            {"source": {"stream": "s"}, "startingPosition": "LATEST", "scalingConfig": {}},
            "scalingConfig is for queues",
        ),
    ],
)
async def test_cel_rules_of_the_mapping_crd(crds: Kube, spec: dict[str, Any], message: str) -> None:
    """The API server refuses what the local platform refuses, with the same words."""
    manifest = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "EventSourceMapping",
        "metadata": {"name": "m"},
        "spec": {"functionName": "fn", **spec},
    }
    reply = await crds.post(ESMS, manifest)
    assert reply.status == 422, reply.body
    assert message in reply.message


async def test_mapping_and_queue_crds_accept_what_the_model_accepts(crds: Kube) -> None:
    def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
        meta = {"name": name}
        return {"apiVersion": "klambda.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}

    stream_mapping = doc(
        "EventSourceMapping",
        "s",
        functionName="fn",
        source={"stream": "clicks"},
        startingPosition="TRIM_HORIZON",
        parallelizationFactor=4,
        batchSize=500,
    )
    queue_mapping = doc(
        "EventSourceMapping",
        "q",
        functionName="fn",
        source={"queue": "jobs"},
        batchSize=100,
        maximumBatchingWindowInSeconds=2,
    )
    for manifest in (stream_mapping, queue_mapping):
        reply = await crds.post(ESMS, manifest)
        assert reply.status == 201, reply.body
    fifo = doc("Queue", "orders.fifo", fifo=True, contentBasedDeduplication=True)
    assert (await crds.post(QUEUES, fifo)).status == 201
    standard = await crds.post(QUEUES, doc("Queue", "plain", contentBasedDeduplication=True))
    assert standard.status == 422
    assert "contentBasedDeduplication needs fifo: true" in standard.message
    too_long = await crds.post(QUEUES, doc("Queue", "q" * 81))
    assert "queue and stream names are at most 80 characters" in too_long.message


async def test_the_schedule_crd(crds: Kube) -> None:
    path = "/apis/klambda.io/v1alpha1/namespaces/default/schedules"
    doc: dict[str, Any] = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "nightly"},
        "spec": {"scheduleExpression": "cron(0 3 * * ? *)", "target": {"function": "report"}},
    }
    assert (await crds.post(path, doc)).status == 201
    doc["metadata"]["name"] = "spread"
    doc["spec"]["flexibleTimeWindow"] = {"mode": "FLEXIBLE"}
    reply = await crds.post(path, doc)
    assert reply.status == 422 and "mode FLEXIBLE needs maximumWindowInMinutes" in reply.message
    doc["spec"]["flexibleTimeWindow"] = {"mode": "OFF"}
    doc["spec"]["state"] = "PAUSED"
    reply = await crds.post(path, doc)
    assert reply.status == 422 and "spec.state" in reply.message
