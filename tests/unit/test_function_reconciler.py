"""The Function and EventSourceMapping reconcilers, driven with a fake platform.

The reconcilers and the store are the real ones; only the platform is fake: it records what it
is asked to do and fails when told to, so each table row checks what a user would see (the
shims that run, the route, the status and its reason, when the object is reconciled again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from klambda.api.aliases import Reservations
from klambda.api.objects import ApiObject, FunctionKey, parse_object
from klambda.api.reasons import Reason
from klambda.api.routes import EventSource, FunctionRoute, Intake, ScheduleRoute
from klambda.api.shim_config import ShimConfig
from klambda.api.types import Code, FunctionSpec
from klambda.controller.code import CodeBundle
from klambda.controller.functions import FunctionReconciler
from klambda.controller.mappings import MappingReconciler
from klambda.controller.platform import Observation, StartFailed
from klambda.controller.reconcile import RunningShim, ShimKey
from klambda.controller.settings import ControllerSettings
from klambda.controller.store import ObjectStore

KEY = ("default", "fn")


@dataclass
class FakePlatform:
    """Runs nothing: records calls; ``fail`` maps a version to the StartFailed its start raises;
    ``ready`` is how many provisioned environments observe() reports ready."""

    shims: dict[ShimKey, RunningShim] = field(default_factory=dict)
    calls: list[tuple[str, ShimKey, Any]] = field(default_factory=list)
    fail: dict[str, StartFailed] = field(default_factory=dict)
    ready: int = 0
    pushes_observations: bool = True

    def running(self, function: FunctionKey | None = None) -> dict[ShimKey, RunningShim]:
        return {k: v for k, v in self.shims.items() if function is None or k[:2] == function}

    def endpoints(self, key: ShimKey) -> tuple[str, ...]:
        return (f"10.0.0.1:{key[2]}",) if key in self.shims else ()

    async def prepare_code(
        self, code: Code, maps: Mapping[str, Mapping[str, str]], pinned: str | None, version: str
    ) -> CodeBundle[None]:
        files = frozenset((code.inline or {"app.py": ""}).keys())
        return CodeBundle("c2hh", 10, None, files)

    async def start(self, config: ShimConfig, code: CodeBundle[Any], spec: FunctionSpec) -> None:
        key = (config.namespace, config.function_name, config.version)
        self.calls.append(("start", key, config.config_hash))
        if config.version in self.fail:
            raise self.fail[config.version]
        self.shims[key] = RunningShim(*key, config.config_hash, config.provisioned_concurrency)

    async def stop(self, key: ShimKey) -> None:
        self.calls.append(("stop", key, None))
        self.shims.pop(key, None)

    async def provision(self, key: ShimKey, count: int) -> None:
        self.calls.append(("provision", key, count))
        self.shims[key] = replace(self.shims[key], provisioned=count)

    async def scale(self, key: ShimKey) -> float | None:
        return None

    async def observe(self, key: ShimKey) -> Observation | None:
        shim = self.shims.get(key)
        if shim is None:
            return None
        return Observation(1, 0, shim.provisioned, min(self.ready, shim.provisioned), 0.0)

    async def close(self) -> None: ...

    def started(self) -> list[ShimKey]:
        return [k for op, k, _ in self.calls if op == "start"]


@dataclass
class Routes:
    published: dict[FunctionKey, FunctionRoute] = field(default_factory=dict)
    sources: dict[tuple[str, str], EventSource] = field(default_factory=dict)
    schedules: dict[tuple[str, str], ScheduleRoute] = field(default_factory=dict)

    def publish(self, route: FunctionRoute) -> None:
        self.published[(route.namespace, route.name)] = route

    def withdraw(self, namespace: str, name: str) -> None:
        self.published.pop((namespace, name), None)

    def publish_event_source(self, source: EventSource) -> None:
        self.sources[(source.namespace, source.name)] = source

    def withdraw_event_source(self, namespace: str, name: str) -> None:
        self.sources.pop((namespace, name), None)

    def publish_schedule(self, route: ScheduleRoute) -> None:
        self.schedules[(route.namespace, route.name)] = route

    def withdraw_schedule(self, namespace: str, name: str) -> None:
        self.schedules.pop((namespace, name), None)

    def publish_intake(self, intake: Intake) -> None: ...

    def withdraw_intake(self, kind: str, namespace: str, name: str) -> None: ...

    def mark_synced(self) -> None: ...


def function(name: str = "fn", **spec: Any) -> ApiObject:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"app.py": "def handler(e, c):\n    return 1\n"}},
            **spec,
        },
    }
    return parse_object(doc)


def queue(name: str, kind: str = "Queue", **spec: Any) -> ApiObject:
    doc = {"apiVersion": "klambda.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return parse_object(doc | {"spec": spec})


def part(kind: str, name: str, **spec: Any) -> ApiObject:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"functionName": "fn", **spec},
    }
    return parse_object(doc)


@dataclass
class World:
    store: ObjectStore
    platform: FakePlatform
    routes: Routes
    reconciler: FunctionReconciler
    queued: list[FunctionKey]

    async def reconcile(self, key: FunctionKey = KEY) -> float | None:
        return await self.reconciler.reconcile(key)

    def ready(self, kind: str, name: str) -> tuple[str, str]:
        obj = self.store.get(kind, "default", name)
        (cond,) = [c for c in obj.status["conditions"] if c["type"] == "Ready"]
        return cond["status"], cond["reason"]


def world(limit: int = 1000) -> World:
    store = ObjectStore()
    platform = FakePlatform()
    routes = Routes()
    queued: list[FunctionKey] = []
    settings = ControllerSettings(data_dir=Path("/nonexistent"), concurrency_limit=limit)
    reconciler = FunctionReconciler(
        store, platform, routes, settings, Reservations(limit), queued.append
    )
    return World(store, platform, routes, reconciler, queued)


async def test_a_new_function_starts_latest_and_is_ready_in_one_reconcile() -> None:
    w = world()
    await w.store.apply(function())
    assert await w.reconcile() is None  # nothing to wait for by the clock
    assert w.platform.started() == [("default", "fn", "$LATEST")]
    assert w.ready("Function", "fn") == ("True", Reason.ENVIRONMENT_READY)
    assert w.routes.published[KEY].versions["$LATEST"].endpoints == ("10.0.0.1:$LATEST",)
    await w.reconcile()  # idempotent: nothing started again
    assert len(w.platform.started()) == 1


@pytest.mark.parametrize(
    ("failure", "state", "retried"),
    [
        (StartFailed(Reason.SHIM_START_FAILED, "the shim exited"), "Failed", True),
        (StartFailed(Reason.CODE_FETCH_FAILED, "404", permanent=True), "Failed", False),
        (StartFailed(Reason.INVALID_RUNTIME, "no such runtime"), "Failed", False),
    ],
)
async def test_a_failed_start_is_retried_with_backoff_unless_permanent(
    failure: StartFailed, state: str, retried: bool
) -> None:
    w = world()
    w.platform.fail["$LATEST"] = failure
    await w.store.apply(function())
    after = await w.reconcile()
    fn = w.store.get("Function", "default", "fn")
    assert w.ready("Function", "fn") == ("False", failure.reason)
    assert fn.status["state"] == state and failure.message in fn.status["conditions"][0]["message"]
    assert (after is not None) == retried  # a transient failure asks to run again (1 s)
    assert after is None or 0.5 < after <= 1.0
    await w.reconcile()  # before the retry time: no second attempt
    assert len(w.platform.started()) == 1
    for f in w.reconciler.state(KEY).failures.values():
        f.retry_at = time.monotonic() - 1  # the backoff has passed
    del w.platform.fail["$LATEST"]
    await w.reconcile()
    assert len(w.platform.started()) == (2 if retried else 1)
    # a permanent failure is tried again once the spec changes
    await w.store.apply(function(timeout=9))
    await w.reconcile()
    assert w.ready("Function", "fn") == ("True", Reason.ENVIRONMENT_READY)


async def test_an_unloadable_handler_fails_permanently_without_starting() -> None:
    w = world()
    await w.store.apply(function(handler="missing.handler"))
    assert await w.reconcile() is None
    assert w.platform.started() == []
    assert w.ready("Function", "fn") == ("False", Reason.INVALID_HANDLER)


async def test_versions_are_numbered_and_run_while_an_alias_routes_to_them() -> None:
    w = world()
    await w.store.apply(function())
    await w.reconcile()
    await w.store.apply(part("Version", "v-one"))
    await w.reconcile()
    assert w.store.get("Version", "default", "v-one").status["version"] == "1"
    assert ("default", "fn", "1") not in w.platform.shims  # unreferenced: not kept running
    await w.store.apply(part("Alias", "live", functionVersion="1"))
    await w.reconcile()
    assert ("default", "fn", "1") in w.platform.shims
    assert w.ready("Alias", "live") == ("True", Reason.ALIAS_READY)
    assert w.routes.published[KEY].aliases["live"].primary == "1"


async def test_provisioned_concurrency_settles_then_is_ready() -> None:
    w = world()
    await w.store.apply(function())
    await w.reconcile()
    await w.store.apply(part("Version", "v-one"))
    await w.reconcile()
    await w.store.apply(part("Alias", "live", functionVersion="1", provisionedConcurrency=2))
    after = await w.reconcile()
    assert w.platform.shims[("default", "fn", "1")].provisioned == 2
    assert w.ready("Alias", "live") == ("False", Reason.PROVISIONING)
    assert after == w.reconciler.settings.settle_period  # watched closely while starting
    w.platform.ready = 2
    assert await w.reconcile() is None
    assert w.ready("Alias", "live") == ("True", Reason.ALIAS_READY)
    status = w.store.get("Alias", "default", "live").status["provisionedConcurrency"]
    assert status == {"requested": 2, "allocated": 2, "ready": 2}
    await w.store.apply(part("Alias", "live", functionVersion="1", provisionedConcurrency=1))
    await w.reconcile()
    assert ("provision", ("default", "fn", "1"), 1) in w.platform.calls


async def test_a_changed_config_map_rolls_the_function() -> None:
    w = world()
    data = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"}}
    await w.store.apply(parse_object({**data, "data": {"app.py": "def handler(e, c): 1"}}))
    await w.store.apply(function(code={"configMap": "code"}))
    await w.reconcile()
    first = w.platform.shims[("default", "fn", "$LATEST")].config_hash
    await w.store.apply(parse_object({**data, "data": {"app.py": "def handler(e, c): 2"}}))
    await w.reconcile()
    assert w.platform.shims[("default", "fn", "$LATEST")].config_hash != first
    assert len(w.platform.started()) == 2


async def test_a_deleted_function_stops_its_shims_and_its_route() -> None:
    w = world()
    await w.store.apply(function())
    await w.store.apply(part("Version", "v-one"))
    await w.reconcile()
    await w.store.apply(part("Alias", "live", functionVersion="1"))
    await w.reconcile()
    await w.store.delete("Function", "default", "fn")
    await w.reconcile()
    assert w.platform.shims == {}
    assert KEY not in w.routes.published
    assert w.store.list("Version") == []  # owned parts go with it


async def test_reservations_are_granted_oldest_first_and_freed_on_delete() -> None:
    w = world(limit=1000)  # 900 may be reserved (100 stay unreserved)
    await w.store.apply(function("a", reservedConcurrency=600))
    await asyncio.sleep(1.1)  # creation order is by timestamp (seconds), then name
    await w.store.apply(function("b", reservedConcurrency=600))
    await w.reconcile(("default", "a"))
    await w.reconcile(("default", "b"))
    assert w.routes.published[("default", "a")].reserved_concurrency == 600
    assert w.routes.published[("default", "b")].reserved_concurrency is None
    message = w.store.get("Function", "default", "b").status["conditions"][0]["message"]
    assert "reservedConcurrency 600 would leave less than 100" in message
    w.queued.clear()
    await w.store.delete("Function", "default", "a")
    await w.reconcile(("default", "a"))
    assert ("default", "b") in w.queued  # its grant changed: queued, not read by "a"
    await w.reconcile(("default", "b"))
    assert w.routes.published[("default", "b")].reserved_concurrency == 600


@pytest.mark.parametrize(
    ("mapping", "ready", "polled"),
    [
        ({"functionName": "fn"}, ("True", Reason.POLLING), True),
        ({"functionName": "fn", "enabled": False}, ("True", Reason.DISABLED), False),
        ({"functionName": "nobody"}, ("False", Reason.FUNCTION_NOT_FOUND), False),
        ({"functionName": "fn", "qualifier": "live"}, ("False", Reason.QUALIFIER_NOT_FOUND), False),
    ],
)
async def test_mappings_deliver_only_to_functions_that_exist(
    mapping: dict[str, Any], ready: tuple[str, str], polled: bool
) -> None:
    w = world()
    await w.store.apply(function(timeout=3))
    await w.store.apply(queue("jobs", visibilityTimeout=30))
    spec = {"source": {"queue": "jobs"}, **mapping}
    await w.store.apply(part("EventSourceMapping", "m", **spec))
    mappings = MappingReconciler(w.store, w.routes, "us-east-1")
    await mappings.reconcile("default", "m")
    assert w.ready("EventSourceMapping", "m") == ready
    assert (w.routes.sources[("default", "m")].route is not None) == polled
    await w.store.delete("EventSourceMapping", "default", "m")
    await mappings.reconcile("default", "m")
    assert ("default", "m") not in w.routes.sources
