"""Manifest validation: defaults, limits, and errors that name the field and the rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from klambda.api import crd, reference
from klambda.api.objects import parse_object
from klambda.api.schema import ValidationError
from klambda.api.types import FUNCTION, FunctionSpec

BASE: dict[str, Any] = {
    "apiVersion": "klambda.io/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello"},
    "spec": {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code": {"inline": {"app.py": "def handler(e, c):\n    return 1\n"}},
    },
}


def manifest(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    return doc


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_object(doc)
    return [str(e) for e in info.value.errors]


def test_defaults_are_applied() -> None:
    obj = parse_object(manifest())
    spec: FunctionSpec = obj.spec
    assert (spec.memory_size, spec.timeout, spec.ephemeral_storage) == (128, 3, 512)
    assert obj.namespace == "default"
    assert obj.manifest["spec"]["memorySize"] == 128


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"memorySize": 64}, "spec.memorySize: must be >= 128 (got 64)"),
        ({"memorySize": 20000}, "spec.memorySize: must be <= 10240 (got 20000)"),
        ({"timeout": 0}, "spec.timeout: must be >= 1 (got 0)"),
        ({"timeout": 901}, "spec.timeout: must be <= 900 (got 901)"),
        ({"timeout": "3"}, "spec.timeout: must be of type integer, not string"),
        ({"ephemeralStorage": 100}, "spec.ephemeralStorage: must be >= 512 (got 100)"),
        ({"runtime": "node20"}, "spec.runtime: Unsupported value: 'node20'"),
        ({"handler": "app handler"}, "spec.handler: must not contain whitespace"),
        ({"description": "x" * 257}, "spec.description: must be at most 256 characters"),
        ({"url": {"authType": "OPEN"}}, "spec.url.authType: Unsupported value: 'OPEN'"),
        ({"url": {}}, "spec.url.authType: required value"),
        (
            {"url": {"authType": "NONE", "cors": {"maxAge": 90000}}},
            "spec.url.cors.maxAge: must be <= 86400",
        ),
        (
            {"url": {"authType": "NONE", "cors": {"allowMethods": ["GET", "TRACE"]}}},
            "spec.url.cors.allowMethods[1]: Unsupported value: 'TRACE'",
        ),
        ({"bogus": 1}, "spec.bogus: unknown field"),
        ({"code": {}}, "spec.code: exactly one of inline, configMap, zip or image must be set"),
        (
            {"code": {"inline": {"a.py": ""}, "zip": "x.zip"}},
            "spec.code: exactly one of inline, configMap, zip or image must be set",
        ),
        ({"code": {"inline": {"../evil.py": ""}}}, "spec.code.inline.../evil.py: key must match"),
        (
            {"environment": {"variables": {"AWS_REGION": "x"}}},
            "spec.environment.variables.AWS_REGION: is reserved by the platform",
        ),
        (
            {"environment": {"variables": {"1BAD": "x"}}},
            "spec.environment.variables.1BAD: key must match",
        ),
        (
            {"environment": {"variables": {"BIG": "x" * 2500, "MORE": "y" * 2500}}},
            "spec.environment.variables: must total at most 4 KB (4096 bytes), got 5007 bytes",
        ),
    ],
)
def test_invalid_fields_are_named_with_their_rule(spec: dict[str, Any], expected: str) -> None:
    found = errors_of(manifest(**spec))
    assert any(e.startswith(expected) for e in found), found


def test_handler_required_unless_provided() -> None:
    doc = manifest()
    del doc["spec"]["handler"]
    assert any(e.startswith("spec.handler: required value") for e in errors_of(doc))
    doc["spec"]["runtime"] = "provided"
    assert parse_object(doc).spec.handler is None


def test_every_error_is_reported_at_once() -> None:
    found = errors_of(manifest(memorySize=1, timeout=0, runtime="cobol"))
    assert len(found) == 3


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Hello", "metadata.name: must consist of lower case"),
        ("a" * 64, "metadata.name: must be no more than 63 characters"),
        ("my--fn", "metadata.name: must not contain '--'"),
        ("", "metadata.name: required value"),
    ],
)
def test_function_names(name: str, expected: str) -> None:
    doc = manifest()
    doc["metadata"]["name"] = name
    assert any(e.startswith(expected) for e in errors_of(doc))


def test_envelope_errors_name_the_subject() -> None:
    doc = manifest()
    doc["apiVersion"] = "v1"
    with pytest.raises(ValidationError) as info:
        parse_object(doc)
    assert str(info.value).startswith('Function "hello" is invalid: apiVersion: must be')
    assert "unknown kind 'Widget'" in errors_of({"kind": "Widget"})[0]


def test_crd_yaml_is_generated_from_the_model(repo_root: Any) -> None:
    for name, content in crd.files().items():
        committed = (repo_root / "charts/klambda/crds" / name).read_text()
        assert committed == content, f"{name} is stale: run python -m klambda.api.crd"


def test_crd_schema_carries_defaults_limits_and_rules() -> None:
    spec = crd.crd(FUNCTION)["spec"]
    version = spec["versions"][0]
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["memorySize"] == {
        "default": 128,
        "description": "Memory in MB each environment may use.",
        "maximum": 10240,
        "minimum": 128,
        "type": "integer",
    }
    assert props["timeout"]["maximum"] == 900
    assert version["subresources"] == {"status": {}}
    assert spec["names"]["shortNames"] == ["fn"]
    rules = props["code"]["x-kubernetes-validations"]
    assert "exactly one of inline, configMap, zip or image" in rules[0]["message"]


def _unbounded(schema: dict[str, Any], path: str) -> list[str]:
    kind = schema.get("type")
    found = []
    if kind == "string" and "maxLength" not in schema and "enum" not in schema:
        found.append(path)
    if kind == "array" and "maxItems" not in schema:
        found.append(path)
    if kind == "object" and "additionalProperties" in schema and "maxProperties" not in schema:
        found.append(path)
    for name, sub in (schema.get("properties") or {}).items():
        found += _unbounded(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _unbounded(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        found += _unbounded(schema["items"], f"{path}[]")
    return found


def _rules(schema: dict[str, Any]) -> list[str]:
    found = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    for sub in (schema.get("properties") or {}).values():
        found += _rules(sub)
    for key in ("additionalProperties", "items"):
        if isinstance(schema.get(key), dict):
            found += _rules(schema[key])
    return found


@pytest.mark.parametrize("kind", ["functions", "versions", "aliases"])
def test_crds_stay_within_the_api_servers_cel_cost_budget(kind: str) -> None:
    """A real API server prices CEL rules by the largest input the schema allows, and refuses
    the whole CRD when over budget; unbounded specs and rules over map keys are priced as huge."""
    doc = crd.files()[f"{kind}.klambda.io.yaml"]
    schema = __import__("yaml").safe_load(doc)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _unbounded(schema["properties"]["spec"], "spec") == []
    rules = _rules(schema)
    assert rules, "the CRD has no rules at all"
    assert not [r for r in rules if ".matches(" in r and ".all(" in r], rules


def test_invalid_map_keys_are_refused_by_the_model_not_the_crd() -> None:
    errors = errors_of(manifest(environment={"variables": {"1BAD": "x"}}))
    assert errors == ["spec.environment.variables.1BAD: key must match '^[a-zA-Z][a-zA-Z0-9_]*$'"]
    too_many = {f"V{i}": "" for i in range(257)}
    assert (
        "must have at most 256 entries"
        in errors_of(manifest(environment={"variables": too_many}))[0]
    )


def test_secret_refs_are_checked_like_variables() -> None:
    ref = {"name": "db", "key": "password"}
    both = manifest(environment={"variables": {"DB": "x"}, "secretRefs": {"DB": ref}})
    assert errors_of(both) == [
        "spec.environment.secretRefs.DB: is also set in variables: set it in one place"
    ]
    reserved = manifest(environment={"secretRefs": {"AWS_REGION": ref}})
    assert "is reserved by the platform" in errors_of(reserved)[0]
    bad = manifest(environment={"secretRefs": {"OK": {"name": "Bad_Name", "key": "k"}}})
    assert errors_of(bad)[0].startswith("spec.environment.secretRefs.OK.name: must match")


def test_image_functions_have_no_runtime_or_handler() -> None:
    image = {"image": "registry.example.com/app:1"}
    ok = copy.deepcopy(BASE)
    ok["spec"] = {"code": image, "imageConfig": {"command": ["app.handler"]}}
    assert parse_object(ok).spec.is_image
    with_runtime = manifest(code=image)  # BASE sets runtime and handler
    assert errors_of(with_runtime) == [
        "spec.runtime: must not be set with code.image (the image is the runtime)"
    ]
    neither = copy.deepcopy(BASE)
    del neither["spec"]["runtime"]
    assert errors_of(neither) == ["spec.runtime: required value"]
    assert errors_of(manifest(imageConfig={"command": ["x"]})) == [
        "spec.imageConfig: applies only to code.image"
    ]


def test_manifest_reference_is_generated_from_the_model(repo_root: Any) -> None:
    committed = (repo_root / "docs/reference/manifests.md").read_text()
    assert committed == reference.render(), (
        "docs/reference/manifests.md is stale: run "
        "python -m klambda.api.reference > docs/reference/manifests.md"
    )
