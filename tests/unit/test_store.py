"""The local object store: Kubernetes' bookkeeping, immutability, cascading deletion."""

from __future__ import annotations

from typing import Any

import pytest

from klambda.api.objects import parse_object
from klambda.controller.store import NotFound, ObjectStore


def doc(kind: str, name: str, spec: dict[str, Any]) -> Any:
    return parse_object(
        {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


FN = {"runtime": "python3.11", "handler": "a.h", "code": {"inline": {"a.py": ""}}}


async def test_generation_moves_only_with_spec() -> None:
    store = ObjectStore()
    created, how = await store.apply(doc("Function", "fn", FN))
    assert (how, created.generation) == ("created", 1)
    same, how = await store.apply(doc("Function", "fn", FN))
    assert (how, same.generation) == ("unchanged", 1)
    changed, how = await store.apply(doc("Function", "fn", {**FN, "timeout": 9}))
    assert (how, changed.generation) == ("configured", 2)
    rv = changed.resource_version
    await store.set_status(changed, {"state": "Active"})
    assert store.get("Function", "default", "fn").generation == 2
    assert store.get("Function", "default", "fn").resource_version != rv


async def test_version_spec_is_immutable_except_provisioned() -> None:
    store = ObjectStore()
    await store.apply(doc("Version", "v1", {"functionName": "fn", "description": "a"}))
    errors = store.check_update(doc("Version", "v1", {"functionName": "fn", "description": "b"}))
    assert [str(e) for e in errors] == [
        "spec.description: field is immutable: publish a new Version instead"
    ]
    assert not store.check_update(
        doc(
            "Version", "v1", {"functionName": "fn", "description": "a", "provisionedConcurrency": 2}
        )
    )


async def test_deleting_a_function_deletes_its_versions_and_aliases() -> None:
    store = ObjectStore()
    await store.apply(doc("Function", "fn", FN))
    await store.apply(doc("Function", "other", FN))
    await store.apply(doc("Version", "fn-v1", {"functionName": "fn"}))
    await store.apply(doc("Alias", "live", {"functionName": "fn", "functionVersion": "1"}))
    await store.apply(doc("Version", "other-v1", {"functionName": "other"}))
    await store.delete("Function", "default", "fn")
    assert [o.name for o in store.list("Version")] == ["other-v1"]
    assert store.list("Alias") == []
    with pytest.raises(NotFound):
        await store.delete("Function", "default", "fn")
