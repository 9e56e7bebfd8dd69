"""The pure reconcile decisions: a function's $LATEST shim and the plan from running to
desired."""

from __future__ import annotations

import copy
from typing import Any

from klambda.api.objects import ApiObject, parse_object
from klambda.api.world import World
from klambda.controller.reconcile import (
    DesiredShim,
    Replace,
    RunningShim,
    Start,
    Stop,
    latest_shim,
    plan,
)

DOC: dict[str, Any] = {
    "apiVersion": "klambda.io/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "fn"},
    "spec": {"runtime": "python3.11", "handler": "a.h", "code": {"inline": {"a.py": "x"}}},
}


def fn(name: str = "fn", **spec: Any) -> Any:
    doc = copy.deepcopy(DOC)
    doc["metadata"]["name"] = name
    doc["spec"].update(spec)
    return parse_object(doc)


def config_map(namespace: str, name: str, data: dict[str, str]) -> ApiObject:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "data": data}
    return parse_object({**doc, "metadata": {"name": name, "namespace": namespace}})


def desired_shims(
    functions: list[ApiObject], maps: list[ApiObject] | None = None
) -> dict[Any, DesiredShim]:
    """Each function's $LATEST, as the reconciler derives it (its namespace's ConfigMaps)."""
    world = World.of(functions, [], [], maps or [])
    shims = (latest_shim(f, world.maps_in(f.namespace)) for f in functions)
    return {s.key: s for s in shims}


def running(d: Any) -> dict[Any, RunningShim]:
    return {k: RunningShim(*k, config_hash=v.config_hash) for k, v in d.items()}


def test_new_function_starts_latest() -> None:
    desired = desired_shims([fn()])
    assert list(desired) == [("default", "fn", "$LATEST")]
    assert plan(desired, {}) == [Start(desired[("default", "fn", "$LATEST")])]


def test_nothing_to_do_when_running_matches() -> None:
    desired = desired_shims([fn()])
    assert plan(desired, running(desired)) == []


def test_runtime_relevant_change_replaces() -> None:
    before = desired_shims([fn()])
    after = desired_shims([fn(timeout=10)])
    actions = plan(after, running(before))
    assert len(actions) == 1 and isinstance(actions[0], Replace)


def test_description_or_url_change_does_not_restart() -> None:
    before = desired_shims([fn()])
    after = desired_shims([fn(description="new", url={"authType": "NONE"})])
    assert plan(after, running(before)) == []


def test_deleted_function_stops_first() -> None:
    current = running(desired_shims([fn("a"), fn("b")]))
    actions = plan(desired_shims([fn("b"), fn("c")]), current)
    assert isinstance(actions[0], Stop) and actions[0].current.name == "a"
    assert [type(a) for a in actions[1:]] == [Start]


def test_config_map_content_is_part_of_the_hash() -> None:
    f = fn(code={"configMap": "src"})
    one = desired_shims([f], [config_map("default", "src", {"a.py": "1"})])
    two = desired_shims([f], [config_map("default", "src", {"a.py": "2"})])
    other_ns = desired_shims(
        [f],
        [config_map("other", "src", {"a.py": "2"}), config_map("default", "src", {"a.py": "1"})],
    )
    key = ("default", "fn", "$LATEST")
    assert one[key].config_hash != two[key].config_hash
    assert one[key].config_hash == other_ns[key].config_hash
