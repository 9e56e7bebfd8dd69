"""The EventSourceMapping reconciler: whether a mapping can deliver, its poller's route, its
status. It reads the mapping and its function's objects only; the function's reconcile queues
its mappings after each run, since versions, aliases and timeouts decide a mapping's problem.
"""

from __future__ import annotations

from klambda.api import event_sources
from klambda.api.world import function_world
from klambda.controller import status as status_mod
from klambda.controller.settings import RouteSink
from klambda.controller.store import Store


class MappingReconciler:
    def __init__(self, store: Store, routes: RouteSink | None, region: str) -> None:
        self.store = store
        self.routes = routes
        self.region = region

    async def reconcile(self, namespace: str, name: str) -> None:
        obj = self.store.find("EventSourceMapping", namespace, name)
        if obj is None:
            if self.routes is not None:
                self.routes.withdraw_event_source(namespace, name)
            return
        world = function_world(self.store, (namespace, obj.spec.function_name), data=False)
        source = event_sources.event_source(world, obj, self.region)
        if self.routes is not None:
            self.routes.publish_event_source(source)
        await self.store.set_status(obj, status_mod.event_source_status(obj, source))
