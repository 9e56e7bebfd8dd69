"""The Schedule reconciler: whether a schedule can fire, its scheduler route, its status.

A schedule fires only when its function exists (a Function's change queues the schedules that
name it). Its status says when it fires next, computed from the expression, and (with a
``SourceStats`` port) when it last fired, read from the mark the scheduler keeps in Redis; it is
reconciled again at its next firing, so both stay current.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from klambda.api import schema
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import ScheduleRoute
from klambda.api.schedule_routes import next_firing, schedule_problem, schedule_route, target_of
from klambda.api.types import ScheduleStatus
from klambda.controller import status as status_mod
from klambda.controller.settings import RouteSink
from klambda.controller.sources import SourceStats
from klambda.controller.store import Store

log = logging.getLogger(__name__)

REFRESH_AT_MOST = 60.0


class ScheduleReconciler:
    def __init__(
        self,
        store: Store,
        routes: RouteSink | None,
        region: str,
        stats: SourceStats | None = None,
    ) -> None:
        self.store = store
        self.routes = routes
        self.region = region
        self.stats = stats

    async def reconcile(self, namespace: str, name: str) -> float | None:
        obj = self.store.find("Schedule", namespace, name)
        if obj is None:
            if self.routes is not None:
                self.routes.withdraw_schedule(namespace, name)
            return None
        function, _ = target_of(obj.spec)
        problem = schedule_problem(obj, self.store.find("Function", namespace, function))
        now = datetime.now(UTC)
        route = schedule_route(obj, self.region, now)
        enabled = obj.spec.state == "ENABLED"
        if self.routes is not None:
            if problem is None and enabled:
                self.routes.publish_schedule(route)
            else:
                self.routes.withdraw_schedule(namespace, name)
        upcoming = next_firing(route, now) if enabled else None
        last = await self._last(route.mark_key)
        await self.store.set_status(obj, _status(obj, route, problem, upcoming, last))
        if upcoming is None:
            return None
        return min(REFRESH_AT_MOST, max(1.0, (upcoming - now).total_seconds() + 1.0))

    async def _last(self, mark_key: str) -> datetime | None:
        if self.stats is None:
            return None
        try:
            fired_ms = await self.stats.last_fired(mark_key)
        except Exception as e:  # the port's adapter raises its client's errors
            log.warning("cannot read when %s last fired: %s", mark_key, e)
            return None
        return datetime.fromtimestamp(fired_ms / 1000, UTC) if fired_ms is not None else None


def _status(
    obj: ApiObject,
    route: ScheduleRoute,
    problem: tuple[Reason, str] | None,
    upcoming: datetime | None,
    last: datetime | None,
) -> dict[str, object]:
    previous = obj.status.get("conditions", [])
    if problem is not None:
        condition = status_mod.mark_failed(previous, *problem, obj.generation, None)
    elif obj.spec.state == "DISABLED":
        condition = status_mod.mark_ready(
            previous, Reason.DISABLED, "state is DISABLED: no firing", obj.generation, None
        )
    else:
        message = "fires next at " + _iso(upcoming) if upcoming else "has no firing left"
        condition = status_mod.mark_ready(previous, Reason.SCHEDULED, message, obj.generation, None)
    kept = obj.status.get("lastFiring", "")
    status = ScheduleStatus(
        observed_generation=obj.generation,
        conditions=[condition],
        schedule_arn=route.arn,
        next_firing=_iso(upcoming) if upcoming else "",
        last_firing=_iso(last) if last else str(kept),
        enabled_since=_iso_ms(route.enabled_since) if route.enabled_since else "",
    )
    return {**obj.status, **schema.dump(status)}


def _iso_ms(epoch: float) -> str:
    """Milliseconds kept: the firing at the instant a schedule was enabled is after it."""
    t = datetime.fromtimestamp(epoch, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
