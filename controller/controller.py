"""The controller: a keyed work queue and a reconciler per kind.

Every change the store reports queues the objects it concerns, by key: a Function, Version or
Alias queues its function (``functions.FunctionReconciler``), an EventSourceMapping itself
(``mappings.MappingReconciler``), a Queue or Stream itself (``sources.SourceReconciler``) and
the mappings that read it, a ConfigMap or Secret the functions of its namespace, a shim
that changed by itself its function. Workers take keys from the queue (``workqueue``: one worker
per key at a time, backoff per key on errors), so a change costs the reconcile of the objects it
touches, not a pass over the world. Every key is queued again each resync period, a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from klambda.api.aliases import Reservations
from klambda.api.objects import ApiObject, FunctionKey, function_of
from klambda.api.schedule_routes import target_of
from klambda.api.tasks import cancel_and_wait
from klambda.api.world import source_of
from klambda.controller.functions import FunctionReconciler
from klambda.controller.mappings import MappingReconciler
from klambda.controller.platform import Platform
from klambda.controller.reconcile import ShimKey
from klambda.controller.schedules import ScheduleReconciler
from klambda.controller.settings import ControllerSettings, RouteSink
from klambda.controller.sources import SourceReconciler, SourceStats
from klambda.controller.store import Store
from klambda.controller.workqueue import WorkQueue

log = logging.getLogger(__name__)

WorkKey = tuple[str, str, str]
"""(kind, namespace, name): a Function, an EventSourceMapping, a Queue, a Stream or a
Schedule."""
SOURCE_KINDS = ("Queue", "Stream")


class Controller:
    def __init__(
        self,
        store: Store,
        platform: Platform,
        routes: RouteSink | None,
        settings: ControllerSettings,
        stats: SourceStats | None = None,
    ) -> None:
        """``routes``: the gateway's table (klambda up), or None (the operator: every gateway
        builds its own routes from the same objects); ``stats``: reads what queues and streams
        hold, for their statuses."""
        self.store = store
        self.platform = platform
        self.routes = routes
        self.settings = settings
        self.queue: WorkQueue[WorkKey] = WorkQueue()
        self.reservations = Reservations(settings.concurrency_limit)
        self.functions = FunctionReconciler(
            store, platform, routes, settings, self.reservations, self._enqueue_function
        )
        self.mappings = MappingReconciler(store, routes, settings.region)
        self.sources = SourceReconciler(store, settings.region, stats, routes=routes)
        self.schedules = ScheduleReconciler(store, routes, settings.region, stats)
        self._reconciled = asyncio.Condition()
        self._synced = False
        store.subscribe(self._changed)

    # ------------------------------------------------------------------ what to queue

    def _enqueue_function(self, key: FunctionKey) -> None:
        self.queue.add(("Function", *key))

    def _changed(self, old: ApiObject | None, new: ApiObject | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            if obj.kind == "EventSourceMapping":
                self.queue.add(obj.key)
            elif obj.kind in SOURCE_KINDS:
                self._source_changed(obj)
            elif obj.kind == "Schedule":
                self.queue.add(obj.key)
            elif obj.kind in ("ConfigMap", "Secret"):
                for fn in self.store.list("Function", obj.namespace):
                    self._enqueue_function((fn.namespace, fn.name))
            elif (function := function_of(obj)) is not None:
                self._enqueue_function(function)
                if obj.kind == "Function":  # the schedules that name it
                    self._enqueue_schedules(obj.namespace, obj.name)

    def _enqueue_schedules(self, namespace: str, function: str) -> None:
        for schedule in self.store.list("Schedule", namespace):
            if target_of(schedule.spec)[0] == function:
                self.queue.add(schedule.key)

    def _source_changed(self, obj: ApiObject) -> None:
        """A Queue or Stream: itself, the mappings that read it and (a Queue) the queues
        whose dead-letter queue it is."""
        self.queue.add(obj.key)
        for esm in self.store.list("EventSourceMapping", obj.namespace):
            if source_of(esm) == (obj.kind, obj.name):
                self.queue.add(esm.key)
        if obj.kind == "Queue":
            for q in self.store.list("Queue", obj.namespace):
                redrive = q.spec.redrive_policy
                if redrive is not None and redrive.dead_letter_queue == obj.name:
                    self.queue.add(q.key)

    def shim_changed(self, key: ShimKey) -> None:
        """What runs for ``key`` changed by itself (the platform's ``on_change``)."""
        self._enqueue_function((key[0], key[1]))

    def _every_key(self) -> set[WorkKey]:
        """Every object to reconcile: functions, the functions named by Versions or Aliases
        (whose statuses say the function is gone), functions with shims still running, and
        mappings."""
        keys: set[WorkKey] = set()
        for kind in ("Function", "Version", "Alias"):
            for obj in self.store.list(kind):
                function = function_of(obj)
                if function is not None:
                    keys.add(("Function", *function))
        keys |= {("Function", ns, name) for ns, name, _ in self.platform.running()}
        for kind in ("EventSourceMapping", "Schedule", *SOURCE_KINDS):
            keys |= {o.key for o in self.store.list(kind)}
        return keys

    def kick(self) -> None:
        """Queues every object (the resync)."""
        for key in self._every_key():
            self.queue.add(key)

    # ------------------------------------------------------------------ running

    async def sync(self) -> None:
        """Reconciles every object once, then tells the routes they are complete (absence
        now means absence). Changes meanwhile are queued for the workers."""
        for fn in self.store.list("Function"):
            self.reservations.update(
                (fn.namespace, fn.name), fn.creation_key, fn.spec.reserved_concurrency
            )
            self.functions.accounts.update(fn.namespace, fn.name, True)
        keys = sorted(self._every_key(), key=lambda k: k[0] != "Function")  # functions first
        limit = asyncio.Semaphore(self.settings.workers)

        async def one(key: WorkKey) -> None:
            async with limit:
                await self._handle(key)

        await asyncio.gather(*(one(k) for k in keys))
        if self.routes is not None:
            self.routes.mark_synced()
        self._synced = True

    async def run(self) -> None:
        """Reconciles queued objects until cancelled."""
        if not self._synced:
            await self.sync()
        workers = [
            asyncio.create_task(self._work(), name=f"reconcile-{i}")
            for i in range(self.settings.workers)
        ]
        try:
            while True:
                await asyncio.sleep(self.settings.resync_period)
                self.kick()
        finally:
            await cancel_and_wait(workers)
            self.queue.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._handle(key)
            finally:
                self.queue.done(key)

    async def _handle(self, key: WorkKey) -> None:
        try:
            after = await self._reconcile(key)
        except Exception:  # one object's failure must not stop the others
            delay = self.queue.retry(key)
            log.exception("reconciling %s %s/%s failed; again in %.1fs", *key, delay)
        else:
            self.queue.forget(key)
            if after is not None:
                self.queue.add_after(key, after)

    async def _reconcile(self, key: WorkKey) -> float | None:
        kind, namespace, name = key
        try:
            if kind == "Function":
                return await self.functions.reconcile((namespace, name))
            if kind in SOURCE_KINDS:
                return await self.sources.reconcile(kind, namespace, name)
            if kind == "Schedule":
                return await self.schedules.reconcile(namespace, name)
            await self.mappings.reconcile(namespace, name)
            return None
        finally:
            if kind == "Function":  # a mapping's problem follows its function's versions
                for esm in self.store.parts("EventSourceMapping", (namespace, name)):
                    self.queue.add(esm.key)
            async with self._reconciled:
                self._reconciled.notify_all()

    # ------------------------------------------------------------------ activation

    def touch(self, namespace: str, name: str, version: str) -> None:
        """The gateway ran ``version`` (its demand report, in process): keep its shim while it
        is in use."""
        self.functions.state((namespace, name)).used[version] = time.time()

    async def activate(self, namespace: str, name: str, version: str, timeout: float) -> None:
        """Starts the shim of an unreferenced version and waits until it takes invocations."""
        key = (namespace, name, version)
        self.touch(namespace, name, version)
        self._enqueue_function((namespace, name))

        def settled() -> bool:
            return bool(self.platform.endpoints(key)) or self.functions.failed(key)

        async with self._reconciled:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconciled.wait_for(settled), timeout)
