"""The gateway on Kubernetes: routes from the API, endpoints from pods, demand reports.

Watches Functions, Versions, Aliases, EventSourceMappings and the function pods, and rebuilds
the route of each function a change concerns (and no other) with the same pure logic the
controller uses (``klambda.api.world``), so gateway and operator agree on where an invocation
goes. A version with no ready pod is asked
for when invoked (a demand report, ``demand``: the operator scales it) and the call waits,
bounded; the gateway never writes a Deployment's replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from klambda.api import defaults, event_sources
from klambda.api import world as world_mod
from klambda.api.aliases import Reservations
from klambda.api.objects import ApiObject, FunctionKey, function_of
from klambda.api.reasons import Reason
from klambda.api.routes import LATEST
from klambda.api.schedule_routes import schedule_problem, schedule_route, target_of
from klambda.api.tasks import cancel_and_wait
from klambda.api.types import KINDS
from klambda.gateway.demand import DemandReporter
from klambda.gateway.routing import RoutingTable
from klambda.kube.client import KubeClient
from klambda.kube.objects import ObjectCache
from klambda.kube.pods import VersionPods
from klambda.kube.workloads import function_key_of

log = logging.getLogger(__name__)

ROUTED_KINDS = tuple(KINDS)
"""Every klambda kind: what routes, mappings and schedules are made of."""
ACTIVATION_REPORT_PERIOD = 1.0
"""Seconds between repeated demand reports while an activation waits for a pod."""


class KubeView:
    def __init__(
        self,
        client: KubeClient,
        table: RoutingTable,
        context: world_mod.RouteContext,
        namespaces: list[str] | None = None,
        concurrency_limit: int = defaults.CONCURRENCY_LIMIT,
        keep_warm: float = defaults.KEEP_WARM,
        gateway_name: str = "gateway",
    ) -> None:
        self.client = client
        self.table = table
        self.context = context
        self.concurrency_limit = concurrency_limit
        self.keep_warm = keep_warm
        # what routes are made of; not ConfigMaps (code), which only the operator reads
        self.store = ObjectCache(client, ROUTED_KINDS, namespaces, status_changes=True)
        self.store.subscribe(self._object_changed)
        self.version_pods = VersionPods(client, self._pod_changed)
        self.pods, self.replica_sets = self.version_pods.informers
        self.demand = DemandReporter(client, gateway_name, keep_warm)
        self.reservations = Reservations(concurrency_limit)
        self._dirty = asyncio.Event()
        self._pods_changed = asyncio.Event()
        """Set on every pod change: activations waiting for a ready pod look again."""
        self._functions: set[FunctionKey] = set()
        self._mappings: set[tuple[str, str]] = set()
        self._schedules: set[tuple[str, str]] = set()
        self._intakes: set[tuple[str, str, str]] = set()
        self._tasks: list[asyncio.Task[Any]] = []

    def _object_changed(self, old: ApiObject | None, new: ApiObject | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            if obj.kind == "EventSourceMapping":
                self._mappings.add((obj.namespace, obj.name))
            elif obj.kind == "Schedule":
                self._schedules.add((obj.namespace, obj.name))
            elif obj.kind in ("Queue", "Stream"):  # its producers and the mappings that read it
                self._intakes.add((obj.kind, obj.namespace, obj.name))
                self._mappings |= {
                    (m.namespace, m.name)
                    for m in self.store.list("EventSourceMapping", obj.namespace)
                    if world_mod.source_of(m) == (obj.kind, obj.name)
                }
            function = function_of(obj)
            if function is not None:
                self._functions.add(function)
            if obj.kind == "Function":  # the schedules that name it
                self._schedules |= {
                    (s.namespace, s.name)
                    for s in self.store.list("Schedule", obj.namespace)
                    if target_of(s.spec)[0] == obj.name
                }
        self._dirty.set()

    def endpoints(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        """Ready pods the version's Deployment made (never look-alikes)."""
        return self.version_pods.endpoints(key)

    def _pod_changed(self, kind: str, old: Any, new: Any) -> None:
        key = function_key_of(new or old)
        if key is not None:
            self._functions.add(key)
            self._dirty.set()
        self._pods_changed.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.pods.run(), name="pods"))
        self._tasks.append(asyncio.create_task(self.replica_sets.run(), name="replicasets"))
        await self.store.start()
        await self.pods.synced.wait()
        await self.replica_sets.synced.wait()
        for fn in self.store.list("Function"):  # every grant known before any route
            key = (fn.namespace, fn.name)
            self.reservations.update(key, fn.creation_key, fn.spec.reserved_concurrency)
        self._functions |= {(fn.namespace, fn.name) for fn in self.store.list("Function")}
        self._schedules |= {(s.namespace, s.name) for s in self.store.list("Schedule")}
        self._intakes |= {
            (o.kind, o.namespace, o.name) for k in ("Queue", "Stream") for o in self.store.list(k)
        }
        self.rebuild()
        self.table.mark_synced()
        self._tasks.append(asyncio.create_task(self._rebuild_forever(), name="routes"))
        self.demand.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        await self.demand.stop()
        await self.store.stop()

    async def _rebuild_forever(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.02)  # coalesce bursts of events into one rebuild
            self._dirty.clear()
            self.rebuild()

    # ------------------------------------------------------------------ routes

    def rebuild(self) -> None:
        """Rebuilds the routes of the functions and mappings changes concerned."""
        while self._functions:
            key = self._functions.pop()
            self._rebuild_function(key)
            # a mapping's problem follows its function's versions and timeouts
            self._mappings |= {
                (m.namespace, m.name) for m in self.store.parts("EventSourceMapping", key)
            }
        while self._mappings:
            self._rebuild_mapping(*self._mappings.pop())
        while self._schedules:
            self._rebuild_schedule(*self._schedules.pop())
        while self._intakes:
            kind, namespace, name = self._intakes.pop()
            obj = self.store.find(kind, namespace, name)
            if obj is None:
                self.table.withdraw_intake(kind, namespace, name)
            else:
                self.table.publish_intake(event_sources.intake_of(obj, self.context.region))

    def _rebuild_function(self, key: FunctionKey) -> None:
        world = world_mod.function_world(self.store, key, data=False)
        fn = world.functions.get(key)
        wanted = fn.spec.reserved_concurrency if fn is not None else None
        order = fn.creation_key if fn is not None else ("", "")
        self._functions |= self.reservations.update(key, order, wanted) - {key}
        if fn is None:
            self.table.withdraw(*key)
            return

        def runtime(version_key: tuple[str, str, str]) -> world_mod.Runtime:
            endpoints = self.endpoints(version_key)
            problem = None
            if version_key[2] == LATEST and not endpoints:
                ready: dict[str, Any] = next(
                    (c for c in fn.status.get("conditions", []) if c.get("type") == "Ready"), {}
                )
                reason = Reason.of(str(ready.get("reason", "")))
                if ready.get("status") == "False" and reason and reason.blocks_invocations:
                    problem = (reason, str(ready.get("message", "")))
            return world_mod.Runtime(endpoints, problem)

        granted = self.reservations.granted.get(key)
        plan_ = world_mod.plan_function(world, key, granted, 10_000)
        self.table.publish(world_mod.build_route(self.context, world, fn, plan_, granted, runtime))

    def _rebuild_mapping(self, namespace: str, name: str) -> None:
        obj = self.store.find("EventSourceMapping", namespace, name)
        if obj is None:
            self.table.withdraw_event_source(namespace, name)
            return
        world = world_mod.function_world(self.store, (namespace, obj.spec.function_name), False)
        self.table.publish_event_source(event_sources.event_source(world, obj, self.context.region))

    def _rebuild_schedule(self, namespace: str, name: str) -> None:
        obj = self.store.find("Schedule", namespace, name)
        function = self.store.find("Function", namespace, target_of(obj.spec)[0]) if obj else None
        if obj is None or obj.spec.state != "ENABLED" or schedule_problem(obj, function):
            self.table.withdraw_schedule(namespace, name)
            return
        self.table.publish_schedule(schedule_route(obj, self.context.region))

    # ------------------------------------------------------------------ demand (activator)

    def touch(self, namespace: str, name: str, version: str) -> None:
        self.demand.touch((namespace, name, version))

    async def activate(self, namespace: str, name: str, version: str, timeout: float) -> None:
        """Asks for the version to run (a demand report; the operator scales it up) and waits
        for a ready pod. The report is repeated while waiting: the Deployment may not exist
        yet when a Function was only just created."""
        key = (namespace, name, version)
        deadline = time.monotonic() + timeout
        while not self.endpoints(key):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self.demand.want(key, 1)
            self._pods_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, ACTIVATION_REPORT_PERIOD)):
                    await self._pods_changed.wait()
        self._rebuild_function((namespace, name))

    def saturated(self, namespace: str, name: str, version: str, pods: int) -> None:
        """Every pod of the version is busy (one environment each): ask for one more.

        Fire and forget: this invocation waits in the shim's bounded queue meanwhile.
        """
        self.demand.want_soon((namespace, name, version), pods + 1)
