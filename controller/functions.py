"""The Function reconciler: one function at a time, in ordered, idempotent phases.

A reconcile reads only its function's objects (``world.function_world``: the Function, its
Versions, Aliases and its namespace's ConfigMaps and Secrets), so its cost does not grow with
the number of functions. Phases, each safe to repeat:

1. reserve: record the function's reserved concurrency (``aliases.Reservations``); functions
   whose grant changed are queued too;
2. publish versions: number new Versions (``publishing``);
3. plan: aliases and provisioned concurrency (``world.plan_function``), and the shims that
   must run (``desired_shims``: $LATEST, referenced or recently used versions);
4. route: publish the function's route (a moved alias takes effect at once);
5. carry out: stop, start or re-provision shims (``reconcile.plan``); a started shim's route
   is published as soon as it is ready, so a roll-out never waits on the other phases;
6. scale and observe: size each version (``Platform.scale``, the one writer) and read
   provisioned readiness;
7. route again, then status of the function, its aliases and versions, each written once.

Failed starts are remembered per configuration hash and retried with backoff (permanent ones
only after the spec changes). The reconcile returns when it wants to run again by the clock
(a retry, environments settling, a keep-warm period ending), or None.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from klambda.api import aliases as aliases_mod
from klambda.api import publishing, scaling
from klambda.api import world as world_mod
from klambda.api.arn import AccountIds, account_for, function_arn
from klambda.api.async_settings import function_async_settings
from klambda.api.objects import ApiObject, FunctionKey
from klambda.api.reasons import Reason
from klambda.api.routes import LATEST
from klambda.api.world import World
from klambda.controller import status as status_mod
from klambda.controller.code import CodeBundle
from klambda.controller.handlers import handler_problem
from klambda.controller.platform import Observation, Platform, StartFailed
from klambda.controller.reconcile import DesiredShim, Provision, ShimKey, Stop, latest_shim, plan
from klambda.controller.settings import ControllerSettings, RouteSink, shim_config
from klambda.controller.store import Store

log = logging.getLogger(__name__)


@dataclass
class Failure:
    config_hash: str
    reason: Reason
    message: str
    permanent: bool
    attempts: int = 1
    retry_at: float = 0.0
    """time.monotonic() of the next attempt."""


@dataclass
class FunctionState:
    """What the controller remembers of one function's versions between reconciles."""

    failures: dict[str, Failure] = field(default_factory=dict)
    code: dict[str, CodeBundle[Any]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    """When the gateway last ran each version (epoch seconds)."""
    observed: dict[str, Observation] = field(default_factory=dict)


def desired_shims(
    world: World,
    key: FunctionKey,
    latest: DesiredShim | None,
    plan_: aliases_mod.FunctionPlan,
    state: FunctionState,
    running: set[ShimKey],
    settings: ControllerSettings,
    now: float,
) -> dict[ShimKey, DesiredShim]:
    """The shims that must run for one function (pure): $LATEST always, a published version
    while an alias routes to it, it is provisioned, or it was used within the keep-warm period
    (every version, with ``every_version``). Forgets uses that no longer count.
    ``latest``: the function's $LATEST (``reconcile.latest_shim``), None when it is gone."""
    if latest is None:
        return {}
    out = {latest.key: latest}
    wanted = {v for a in plan_.aliases if a.problem is None for v in a.versions}
    wanted |= set(plan_.provisioned)
    for number, obj in world.numbered(key).items():
        skey = (*key, number)
        used = state.used.get(number)
        observed = state.observed.get(number)
        idle = observed.idle_seconds if observed else 0.0
        # the same rule as a Deployment's size on Kubernetes: an unreferenced version runs
        # while it was used within the keep-warm period
        demand = [scaling.Demand(1, max(used, now - idle), now)] if used else []
        runs = int(skey in running)
        recent = scaling.desired_replicas(0, runs, demand, now, settings.idle_timeout)
        if number in wanted or recent or settings.every_version:
            out[skey] = DesiredShim(
                *skey,
                publishing.spec_of(obj.status),
                obj.status["configHash"],
                plan_.provisioned.get(number, 0),
                obj.status["codeSha256"],
            )
        elif used is not None:
            state.used.pop(number, None)
    return out


class FunctionReconciler:
    def __init__(
        self,
        store: Store,
        platform: Platform,
        routes: RouteSink | None,
        settings: ControllerSettings,
        reservations: aliases_mod.Reservations,
        enqueue: Callable[[FunctionKey], None],
        accounts: AccountIds | None = None,
    ) -> None:
        self.store = store
        self.platform = platform
        self.routes = routes
        self.settings = settings
        self.reservations = reservations
        self.enqueue = enqueue
        self.accounts = accounts or AccountIds()
        self._state: dict[FunctionKey, FunctionState] = {}

    def state(self, key: FunctionKey) -> FunctionState:
        return self._state.setdefault(key, FunctionState())

    def failed(self, key: ShimKey) -> bool:
        state = self._state.get((key[0], key[1]))
        return state is not None and key[2] in state.failures

    async def reconcile(self, key: FunctionKey) -> float | None:
        world = world_mod.function_world(self.store, key)
        first = world.functions.get(key)
        self._reserve(key, first)
        collision = self._account(key, first is not None)
        # what $LATEST must run: its spec, ConfigMaps and Secrets (not its Versions' statuses,
        # which publishing below may write), so computed once
        latest = (
            latest_shim(first, world.maps_in(key[0]), world.secrets_in(key[0])) if first else None
        )
        if await self._publish_versions(world, key, latest):
            world = world_mod.function_world(self.store, key)
        fn = world.functions.get(key)
        if fn is None:  # deleted while versions were being numbered
            latest = None
        granted = self.reservations.granted.get(key)
        plan_ = world_mod.plan_function(world, key, granted, self.settings.max_environments)
        state = self.state(key)
        running = set(self.platform.running(key))
        desired = desired_shims(
            world, key, latest, plan_, state, running, self.settings, time.time()
        )
        if latest is not None and collision is not None:  # nothing runs, invocations refused
            desired = {}
            message = (
                f"the account id {account_for(key[0])} of namespace {key[0]!r} is also "
                f"namespace {collision!r}'s: both are refused until one is renamed"
            )
            reason = Reason.ACCOUNT_ID_COLLISION
            state.failures[LATEST] = Failure(latest.config_hash, reason, message, True)
        if fn is not None:  # routes first: a moved alias takes effect at once
            self._publish_route(world, fn, plan_, state)
        await self._carry_out(world, key, desired, plan_, state)
        delays = list(await asyncio.gather(*(self.platform.scale(k) for k in desired)))
        settling = await self._observe(desired, state)
        if fn is not None:
            self._publish_route(world, fn, plan_, state)
        elif self.routes is not None:
            self.routes.withdraw(*key)
        await self._write_statuses(world, key, latest, plan_, state)
        for version in [v for v in state.failures if (*key, v) not in desired]:
            del state.failures[version]
        if fn is None and not self.platform.running(key):
            self._state.pop(key, None)
        return self._next_run(state, settling, delays)

    def _next_run(
        self, state: FunctionState, settling: bool, delays: list[float | None]
    ) -> float | None:
        """When to reconcile again by the clock alone (changes queue it anyway)."""
        out = [d for d in delays if d is not None]
        if settling:
            out.append(self.settings.settle_period)
        elif state.observed and not self.platform.pushes_observations:
            out.append(self.settings.watch_period)
        now = time.monotonic()
        out += [max(0.0, f.retry_at - now) for f in state.failures.values() if not f.permanent]
        return min(out) if out else None

    # ------------------------------------------------------------------ phases

    def _reserve(self, key: FunctionKey, fn: ApiObject | None) -> None:
        wanted = fn.spec.reserved_concurrency if fn is not None else None
        order = fn.creation_key if fn is not None else ("", "")
        for other in self.reservations.update(key, order, wanted) - {key}:
            self.enqueue(other)

    def _account(self, key: FunctionKey, present: bool) -> str | None:
        """Records the function's namespace by account id; returns another namespace sharing
        the id, if any. Functions of namespaces whose collision changed are queued."""
        for namespace in self.accounts.update(key[0], key[1], present):
            for other in self.store.list("Function", namespace):
                if (other.namespace, other.name) != key:
                    self.enqueue((other.namespace, other.name))
        return self.accounts.collision(key[0]) if present else None

    async def _publish_versions(
        self, world: World, key: FunctionKey, latest: DesiredShim | None
    ) -> bool:
        """Numbers new Versions; True when any status was written."""
        objs = world.versions.get(key, [])
        if not objs:
            return False
        fn = world.functions.get(key)
        current = None
        state = self._state.get(key)
        bundle = state.code.get(LATEST) if state else None
        if fn is not None and latest is not None and bundle is not None:
            running = self.platform.running(key).get((*key, LATEST))
            if running is not None and running.config_hash == latest.config_hash:
                current = publishing.snapshot(fn.spec, bundle.sha256, latest.config_hash)
        last = int(fn.status.get("lastVersion", 0)) if fn is not None else 0
        assignments, new_last = publishing.assign(objs, last, current, fn is not None)
        if fn is not None and new_last != last:
            await self.store.set_status(fn, {**fn.status, "lastVersion": new_last})
        for a in assignments:
            await self.store.set_status(a.obj, status_mod.version_status(a, a.obj.status))
        return bool(assignments) or new_last != last

    async def _carry_out(
        self,
        world: World,
        key: FunctionKey,
        desired: dict[ShimKey, DesiredShim],
        plan_: aliases_mod.FunctionPlan,
        state: FunctionState,
    ) -> None:
        now = time.monotonic()
        steps = []
        for action in plan(desired, self.platform.running(key)):
            if isinstance(action, Stop):
                steps.append(self._stop(action.current.key, state))
            elif isinstance(action, Provision):
                steps.append(self.platform.provision(action.key, action.count))
            elif self._due(action.desired, state, now):
                steps.append(self._start(action.desired, world, plan_, state))
        if steps:
            await asyncio.gather(*steps)

    def _due(self, want: DesiredShim, state: FunctionState, now: float) -> bool:
        failure = state.failures.get(want.version)
        if failure is None or failure.config_hash != want.config_hash:
            return True
        return not failure.permanent and now >= failure.retry_at

    async def _stop(self, key: ShimKey, state: FunctionState) -> None:
        await self.platform.stop(key)
        state.code.pop(key[2], None)
        state.observed.pop(key[2], None)

    async def _start(
        self,
        want: DesiredShim,
        world: World,
        plan_: aliases_mod.FunctionPlan,
        state: FunctionState,
    ) -> None:
        try:
            bundle = await self.platform.prepare_code(
                want.spec.code, world.maps_in(want.namespace), want.code_sha256, want.version
            )
            problem = handler_problem(want.spec, bundle.files)
            if problem is not None:
                raise StartFailed(Reason.INVALID_HANDLER, problem, permanent=True)
            config = shim_config(want, self.settings)
            await self.platform.start(config, bundle, want.spec)
        except StartFailed as e:
            self._record_failure(want, e, state)
            return
        state.code[want.version] = bundle
        state.failures.pop(want.version, None)
        fn = world.functions[(want.namespace, want.name)]
        self._publish_route(world, fn, plan_, state)  # switch traffic now; the old shim drains

    def _record_failure(self, want: DesiredShim, e: StartFailed, state: FunctionState) -> None:
        previous = state.failures.get(want.version)
        same = previous is not None and previous.config_hash == want.config_hash
        attempts = previous.attempts + 1 if previous and same else 1
        delay = min(60.0, 2.0 ** (attempts - 1))
        log.warning("%s/%s:%s: %s: %s (attempt %d)", *want.key, e.reason, e, attempts)
        state.failures[want.version] = Failure(
            want.config_hash, e.reason, e.message, e.permanent, attempts, time.monotonic() + delay
        )

    async def _observe(self, desired: dict[ShimKey, DesiredShim], state: FunctionState) -> bool:
        """Reads provisioned readiness and idleness of the shims that need watching; True
        while provisioned environments are still starting."""
        watch = [k for k, d in desired.items() if d.provisioned or k[2] != LATEST]
        results = await asyncio.gather(*(self.platform.observe(k) for k in watch))
        state.observed = {k[2]: r for k, r in zip(watch, results, strict=True) if r is not None}
        return any(
            desired[k].provisioned
            > (state.observed[k[2]].provisioned_ready if k[2] in state.observed else 0)
            for k in watch
        )

    # ------------------------------------------------------------------ routes

    def _runtime(self, state: FunctionState) -> Callable[[ShimKey], world_mod.Runtime]:
        def runtime(key: ShimKey) -> world_mod.Runtime:
            failure = state.failures.get(key[2])
            bundle = state.code.get(key[2])
            return world_mod.Runtime(
                self.platform.endpoints(key),
                (failure.reason, failure.message) if failure else None,
                bundle.sha256 if bundle else "",
                bundle.size if bundle else 0,
            )

        return runtime

    def _publish_route(
        self, world: World, fn: ApiObject, plan_: aliases_mod.FunctionPlan, state: FunctionState
    ) -> None:
        if self.routes is None:  # the operator: gateways route
            return
        key = (fn.namespace, fn.name)
        granted = self.reservations.granted.get(key)
        self.routes.publish(
            world_mod.build_route(
                self.settings.route_context, world, fn, plan_, granted, self._runtime(state)
            )
        )

    # ------------------------------------------------------------------ status

    async def _write_statuses(
        self,
        world: World,
        key: FunctionKey,
        latest: DesiredShim | None,
        plan_: aliases_mod.FunctionPlan,
        state: FunctionState,
    ) -> None:
        fn = world.functions.get(key)
        if fn is not None and latest is not None:
            current = self.platform.running(key).get((*key, LATEST))
            bundle = state.code.get(LATEST)
            warning = self.reservations.refused.get(key) or (plan_.problem or (None, None))[1]
            _, unusable = function_async_settings(
                fn, world.numbered(key), world.aliases.get(key, []), self.settings.region
            )
            warning = "; ".join([w for w in (warning, *unusable) if w]) or None
            await self.store.set_status(
                fn,
                status_mod.function_status(
                    fn,
                    previous=fn.status,
                    current=current is not None and current.config_hash == latest.config_hash,
                    serving=current is not None,
                    failure=state.failures.get(LATEST),
                    url=self.settings.route_context.url_of(*key) if fn.spec.url else "",
                    code_sha256=bundle.sha256 if bundle else "",
                    warning=warning,
                ),
            )
        ready = {v: o.provisioned_ready for v, o in state.observed.items()}
        for a in plan_.aliases:
            await self.store.set_status(a.obj, self._alias_status(key, a, plan_, ready))
        for number, obj in world.numbered(key).items():
            provisioned = status_mod.version_provisioned(obj, plan_, ready.get(number, 0), number)
            await self.store.set_status(obj, provisioned)

    def _alias_status(
        self,
        key: FunctionKey,
        a: aliases_mod.AliasPlan,
        plan_: aliases_mod.FunctionPlan,
        ready: dict[str, int],
    ) -> dict[str, Any]:
        region = self.settings.region
        return status_mod.alias_status(
            a.obj,
            arn=function_arn(region, account_for(key[0]), key[1], a.name),
            url=self.settings.route_context.url_of(*key, a.name) if a.obj.spec.url else "",
            problem=a.problem or plan_.problem,
            provisioned=status_mod.alias_provisioned(a, plan_, ready),
        )
