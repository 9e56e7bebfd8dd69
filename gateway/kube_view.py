"""The gateway on Kubernetes: routes from the API, endpoints from pods, demand reports.

Watches Functions, Versions, Aliases, EventSourceMappings and the function pods, and on any change
rebuilds every route with the same pure logic the controller uses (``klambda.api.world``), so
gateway and operator agree on where an invocation goes. A version with no ready pod is asked
for when invoked (a demand report, ``demand``: the operator scales it) and the call waits,
bounded; the gateway never writes a Deployment's replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from klambda.api import defaults
from klambda.api import world as world_mod
from klambda.api.reasons import Reason
from klambda.api.routes import LATEST
from klambda.api.tasks import cancel_and_wait
from klambda.gateway.demand import DemandReporter
from klambda.gateway.routing import RoutingTable
from klambda.kube.client import KubeClient
from klambda.kube.informer import Informer
from klambda.kube.objects import ObjectCache
from klambda.kube.workloads import pods_path, ready_endpoints

log = logging.getLogger(__name__)

ROUTED_KINDS = ("Function", "Version", "Alias", "EventSourceMapping")
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
        self.store = ObjectCache(client, ROUTED_KINDS, namespaces)
        self.pods = Informer(
            client,
            pods_path(),
            self._changed,
            label_selector="app.kubernetes.io/managed-by=klambda",
        )
        self.demand = DemandReporter(client, gateway_name, keep_warm)
        self._dirty = asyncio.Event()
        self._published: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[Any]] = []

    def _changed(self, *_: Any) -> None:
        self._dirty.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.pods.run(), name="pods"))
        await self.store.start()
        await self.pods.synced.wait()
        self.rebuild()
        self.table.mark_synced()
        self._tasks.append(asyncio.create_task(self._rebuild_forever(), name="routes"))
        self.demand.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        await self.demand.stop()
        await self.store.stop()

    async def _rebuild_forever(self) -> None:
        seen = self.store.revision
        while True:
            change = asyncio.create_task(self.store.wait_for_change(seen))
            dirty = asyncio.create_task(self._dirty.wait())
            await asyncio.wait({change, dirty}, return_when=asyncio.FIRST_COMPLETED)
            change.cancel()
            dirty.cancel()
            self._dirty.clear()
            seen = self.store.revision
            await asyncio.sleep(0.02)  # coalesce bursts of events into one rebuild
            self.rebuild()

    # ------------------------------------------------------------------ routes

    def rebuild(self) -> None:
        world = world_mod.World.of(
            self.store.list("Function"),
            self.store.list("Version"),
            self.store.list("Alias"),
            (),
            event_sources=self.store.list("EventSourceMapping"),
        )
        plans = world_mod.plan(world, self.concurrency_limit, 10_000)
        pods = list(self.pods.cache.values())

        def runtime(key: tuple[str, str, str]) -> world_mod.Runtime:
            endpoints = ready_endpoints(pods, key)
            problem = None
            fn = world.functions.get((key[0], key[1]))
            if key[2] == LATEST and fn is not None and not endpoints:
                ready: dict[str, Any] = next(
                    (c for c in fn.status.get("conditions", []) if c.get("type") == "Ready"), {}
                )
                reason = Reason.of(str(ready.get("reason", "")))
                if ready.get("status") == "False" and reason and reason.blocks_invocations:
                    problem = (reason, str(ready.get("message", "")))
            return world_mod.Runtime(endpoints, problem)

        for key, fn in world.functions.items():
            self.table.publish(
                world_mod.build_route(
                    self.context, world, fn, plans.functions[key], plans.granted.get(key), runtime
                )
            )
        for key in self._published - set(world.functions):
            self.table.withdraw(*key)
        self._published = set(world.functions)
        self.table.publish_event_sources(world_mod.event_sources(world, self.context.region))

    # ------------------------------------------------------------------ demand (activator)

    def touch(self, namespace: str, name: str, version: str) -> None:
        self.demand.touch((namespace, name, version))

    async def activate(self, namespace: str, name: str, version: str, timeout: float) -> None:
        """Asks for the version to run (a demand report; the operator scales it up) and waits
        for a ready pod. The report is repeated while waiting: the Deployment may not exist
        yet when a Function was only just created."""
        key = (namespace, name, version)
        deadline = time.monotonic() + timeout
        while not ready_endpoints(self.pods.cache.values(), key):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self.demand.want(key, 1)
            self._dirty.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, ACTIVATION_REPORT_PERIOD)):
                    await self._dirty.wait()
        self.rebuild()

    def saturated(self, namespace: str, name: str, version: str, pods: int) -> None:
        """Every pod of the version is busy (one environment each): ask for one more.

        Fire and forget: this invocation waits in the shim's bounded queue meanwhile.
        """
        self.demand.want_soon((namespace, name, version), pods + 1)
