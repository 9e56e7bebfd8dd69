"""The reconcile loop: declared objects -> running shims, routes and status.

Each pass is level-based: it reads every object, numbers new versions (``publishing``), plans
aliases and provisioned concurrency (``aliases``), computes the shims that must run
(``reconcile``), carries out the plan on the platform, then republishes every route and
rewrites every status. A function's route is republished as soon as its new shim is ready, so a
roll-out never waits on other functions. Failed starts are remembered per configuration hash
and retried with backoff (or, when permanent, only after the spec changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from klambda.api import aliases as aliases_mod
from klambda.api import defaults, publishing, scaling
from klambda.api import world as world_mod
from klambda.api.arn import account_for, function_arn
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import (
    LATEST,
    EventSource,
    FunctionRoute,
)
from klambda.api.shim_config import ShimConfig
from klambda.api.tasks import cancel_and_wait
from klambda.api.types import AliasSpec
from klambda.api.world import World
from klambda.controller import status as status_mod
from klambda.controller.code import CodeBundle
from klambda.controller.handlers import handler_problem
from klambda.controller.platform import Observation, Platform, StartFailed
from klambda.controller.reconcile import (
    DesiredShim,
    Provision,
    ShimKey,
    Stop,
    latest_shim,
    plan,
)
from klambda.controller.store import Store

log = logging.getLogger(__name__)


class RouteSink(Protocol):
    """Where routes go: the gateway's routing table."""

    def publish(self, route: FunctionRoute) -> None: ...

    def withdraw(self, namespace: str, name: str) -> None: ...

    def publish_event_sources(self, sources: list[EventSource]) -> None: ...

    def mark_synced(self) -> None: ...


@dataclass(frozen=True)
class ControllerSettings:
    data_dir: Path
    """Code, logs and shim state live under here."""
    gateway_url: str = f"http://127.0.0.1:{defaults.GATEWAY_PORT}"
    """Base URL users reach the gateway at; function URLs in status start with it."""
    region: str = defaults.REGION
    """Region in ARNs and AWS_REGION."""
    default_namespace: str = defaults.NAMESPACE
    """The namespace whose URL ids carry no namespace suffix."""
    resync_period: float = 10.0
    """Seconds between passes when nothing changed (retries, crashed shims)."""
    settle_period: float = 0.25
    """Seconds between passes while provisioned environments are still starting."""
    watch_period: float = 2.0
    """Seconds between passes while shims with provisioned or on-demand versions run."""
    idle_timeout: float = defaults.KEEP_WARM
    """Seconds an idle environment (and an unreferenced version's shim) is kept warm."""
    max_environments: int = 64
    """Environments per shim at most."""
    concurrency_limit: int = defaults.CONCURRENCY_LIMIT
    """The regional limit: environments busy at once across all functions."""
    every_version: bool = False
    """Keep every published version deployed (Kubernetes: a Deployment scaled to zero costs
    nothing), rather than only referenced or recently used ones (local: shims cost processes)."""


@dataclass
class Failure:
    config_hash: str
    reason: Reason
    message: str
    permanent: bool
    attempts: int = 1
    retry_at: float = 0.0


@dataclass
class Controller:
    store: Store
    platform: Platform
    routes: RouteSink
    settings: ControllerSettings
    _failures: dict[ShimKey, Failure] = field(default_factory=dict)
    _code: dict[ShimKey, CodeBundle[Any]] = field(default_factory=dict)
    _published: set[tuple[str, str]] = field(default_factory=set)
    _used: dict[ShimKey, float] = field(default_factory=dict)
    _observed: dict[ShimKey, Observation] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _passed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _settling: bool = False
    passes: int = 0

    def kick(self) -> None:
        """Asks for a pass soon (a shim died, a version is wanted)."""
        self._wake.set()

    async def run(self) -> None:
        """Reconciles on every change and every resync period, until cancelled."""
        forward = asyncio.create_task(self._forward_store_changes(), name="store-changes")
        try:
            while True:
                self._wake.clear()
                try:
                    await self.reconcile()
                except Exception:  # a pass must never kill the loop; the next one retries
                    log.exception("reconcile pass failed")
                period = self.settings.resync_period
                if self._settling:
                    period = self.settings.settle_period
                elif self._observed:  # provisioned or on-demand version shims: watch them
                    period = min(period, self.settings.watch_period)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the event fires, and the operator would not stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self._wake.wait()
        finally:
            await cancel_and_wait([forward])

    async def _forward_store_changes(self) -> None:
        seen = self.store.revision
        while True:
            seen = await self.store.wait_for_change(seen)
            self._wake.set()

    # ------------------------------------------------------------------ activation

    def touch(self, namespace: str, name: str, version: str) -> None:
        """The gateway ran ``version`` (its demand report, in process): keep its shim while it
        is in use."""
        self._used[(namespace, name, version)] = time.time()

    async def activate(self, namespace: str, name: str, version: str, timeout: float) -> None:
        """Starts the shim of an unreferenced version and waits until it takes invocations."""
        key = (namespace, name, version)
        self.touch(namespace, name, version)
        self.kick()

        def settled() -> bool:
            return bool(self.platform.endpoints(key)) or key in self._failures

        async with self._passed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._passed.wait_for(settled), timeout)

    # ------------------------------------------------------------------ one pass

    def _read(self) -> World:
        return World.of(
            self.store.list("Function"),
            self.store.list("Version"),
            self.store.list("Alias"),
            self.store.list("ConfigMap"),
            self.store.list("Secret"),
            self.store.list("EventSourceMapping"),
        )

    async def reconcile(self) -> None:
        world = self._read()
        await self._publish_versions(world)
        world = self._read()
        plans = world_mod.plan(
            world, self.settings.concurrency_limit, self.settings.max_environments
        )
        desired = self._desired(world, plans.functions)
        # Routes first: a moved alias takes effect at once; a version whose shim is still
        # starting is activatable, so callers wait for it rather than reach the old target.
        self._publish_routes(world, plans)
        await self._carry_out(world, desired, plans)
        await asyncio.gather(*(self.platform.scale(key) for key in desired))
        await self._observe(desired)
        self._publish_routes(world, plans)
        for gone in self._published - set(world.functions):
            self.routes.withdraw(*gone)
        sources = world_mod.event_sources(world, self.settings.region)
        self.routes.publish_event_sources(sources)
        self.routes.mark_synced()
        self._published = set(world.functions)
        await self._write_statuses(world, plans.functions, plans.refused, sources)
        for key in list(self._failures):
            if key not in desired:
                del self._failures[key]
        self.passes += 1
        async with self._passed:
            self._passed.notify_all()

    def _desired(
        self, world: World, plans: dict[tuple[str, str], aliases_mod.FunctionPlan]
    ) -> dict[ShimKey, DesiredShim]:
        now = time.time()
        running = self.platform.running()
        out: dict[ShimKey, DesiredShim] = {}
        for key, fn in world.functions.items():
            latest = latest_shim(fn, world.maps_in(fn.namespace), world.secrets_in(fn.namespace))
            out[latest.key] = latest
            plan_ = plans[key]
            wanted = {v for a in plan_.aliases if a.problem is None for v in a.versions}
            wanted |= set(plan_.provisioned)
            for number, obj in world.numbered(key).items():
                skey = (*key, number)
                used = self._used.get(skey)
                observed = self._observed.get(skey)
                idle = observed.idle_seconds if observed else 0.0
                # the same rule as a Deployment's size on Kubernetes: an unreferenced
                # version runs while it was used within the keep-warm period
                demand = [scaling.Demand(1, max(used, now - idle), now)] if used else []
                runs = int(skey in running)
                recent = scaling.desired_replicas(0, runs, demand, now, self.settings.idle_timeout)
                if number in wanted or recent or self.settings.every_version:
                    out[skey] = DesiredShim(
                        *skey,
                        publishing.spec_of(obj.status),
                        obj.status["configHash"],
                        plan_.provisioned.get(number, 0),
                        obj.status["codeSha256"],
                    )
                elif used is not None:
                    self._used.pop(skey, None)
        return out

    # ------------------------------------------------------------------ versions

    async def _publish_versions(self, world: World) -> None:
        for key, objs in world.versions.items():
            fn = world.functions.get(key)
            current = None
            bundle = self._code.get((*key, LATEST))
            if fn is not None and bundle is not None:
                running = self.platform.running().get((*key, LATEST))
                want = latest_shim(fn, world.maps_in(fn.namespace), world.secrets_in(fn.namespace))
                if running is not None and running.config_hash == want.config_hash:
                    current = publishing.snapshot(fn.spec, bundle.sha256, want.config_hash)
            last = int(fn.status.get("lastVersion", 0)) if fn is not None else 0
            assignments, new_last = publishing.assign(objs, last, current, fn is not None)
            if fn is not None and new_last != last:
                await self.store.set_status(fn, {**fn.status, "lastVersion": new_last})
            for a in assignments:
                await self.store.set_status(a.obj, status_mod.version_status(a, a.obj.status))

    # ------------------------------------------------------------------ shims

    async def _carry_out(
        self, world: World, desired: dict[ShimKey, DesiredShim], plans: world_mod.Plans
    ) -> None:
        now = time.monotonic()
        steps = []
        for action in plan(desired, self.platform.running()):
            if isinstance(action, Stop):
                steps.append(self._stop(action.current.key))
            elif isinstance(action, Provision):
                steps.append(self.platform.provision(action.key, action.count))
            elif self._due(action.desired, now):
                fn = world.functions[(action.desired.namespace, action.desired.name)]
                steps.append(self._start(action.desired, world, fn, plans))
        if steps:
            await asyncio.gather(*steps)

    def _due(self, want: DesiredShim, now: float) -> bool:
        failure = self._failures.get(want.key)
        if failure is None or failure.config_hash != want.config_hash:
            return True
        return not failure.permanent and now >= failure.retry_at

    async def _stop(self, key: ShimKey) -> None:
        await self.platform.stop(key)
        self._code.pop(key, None)
        self._observed.pop(key, None)

    async def _start(
        self, want: DesiredShim, world: World, fn: ApiObject, plans: world_mod.Plans
    ) -> None:
        try:
            bundle = await self.platform.prepare_code(
                want.spec.code, world.maps_in(want.namespace), want.code_sha256, want.version
            )
            problem = handler_problem(want.spec, bundle.files)
            if problem is not None:
                raise StartFailed(Reason.INVALID_HANDLER, problem, permanent=True)
            config = self._shim_config(want)
            await self.platform.start(config, bundle, want.spec)
        except StartFailed as e:
            self._record_failure(want, e)
            return
        self._code[want.key] = bundle
        self._failures.pop(want.key, None)
        # Switch traffic now: the old shim (if any) drains after a short delay.
        self._publish_route(world, fn, plans)

    def _record_failure(self, want: DesiredShim, e: StartFailed) -> None:
        previous = self._failures.get(want.key)
        same = previous is not None and previous.config_hash == want.config_hash
        attempts = previous.attempts + 1 if previous and same else 1
        delay = min(60.0, 2.0 ** (attempts - 1))
        log.warning("%s/%s:%s: %s: %s (attempt %d)", *want.key, e.reason, e, attempts)
        self._failures[want.key] = Failure(
            want.config_hash, e.reason, e.message, e.permanent, attempts, time.monotonic() + delay
        )

    def _shim_config(self, want: DesiredShim) -> ShimConfig:
        spec = want.spec
        s = self.settings
        return ShimConfig(
            function_name=want.name,
            version=want.version,
            runtime=spec.runtime or "",
            handler=spec.handler or "",
            code_dir="",  # where the platform puts the code: it sets this in start()
            function_arn=function_arn(s.region, account_for(want.namespace), want.name),
            log_dir=str(self.log_dir(want.namespace, want.name)),
            memory_size=spec.memory_size,
            timeout=float(spec.timeout),
            environment=spec.env,
            # an image's own container gets the Secret values (the shim does not need them)
            inherited_environment=[] if spec.is_image else sorted(spec.secret_refs),
            external_runtime=spec.is_image,
            region=s.region,
            namespace=want.namespace,
            config_hash=want.config_hash,
            provisioned_concurrency=want.provisioned,
            max_environments=s.max_environments,
            idle_timeout=s.idle_timeout,
        )

    def log_dir(self, namespace: str, name: str) -> Path:
        return self.settings.data_dir / "logs" / namespace / name

    async def _observe(self, desired: dict[ShimKey, DesiredShim]) -> None:
        """Reads provisioned readiness and idleness of shims that need watching."""
        watch = [k for k, d in desired.items() if d.provisioned or k[2] != LATEST]
        results = await asyncio.gather(*(self.platform.observe(k) for k in watch))
        self._observed = {k: r for k, r in zip(watch, results, strict=True) if r is not None}
        self._settling = any(
            desired[k].provisioned
            > (self._observed[k].provisioned_ready if k in self._observed else 0)
            for k in watch
        )

    # ------------------------------------------------------------------ routes

    @property
    def route_context(self) -> world_mod.RouteContext:
        s = self.settings
        return world_mod.RouteContext(s.region, s.gateway_url, s.default_namespace)

    def url_of(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        return self.route_context.url_of(namespace, name, qualifier)

    def _runtime(self, key: ShimKey) -> world_mod.Runtime:
        failure = self._failures.get(key)
        bundle = self._code.get(key)
        return world_mod.Runtime(
            self.platform.endpoints(key),
            (failure.reason, failure.message) if failure else None,
            bundle.sha256 if bundle else "",
            bundle.size if bundle else 0,
        )

    def _publish_route(self, world: World, fn: ApiObject, plans: world_mod.Plans) -> None:
        key = (fn.namespace, fn.name)
        self.routes.publish(
            world_mod.build_route(
                self.route_context,
                world,
                fn,
                plans.functions[key],
                plans.granted.get(key),
                self._runtime,
            )
        )

    def _publish_routes(self, world: World, plans: world_mod.Plans) -> None:
        for fn in world.functions.values():
            self._publish_route(world, fn, plans)

    # ------------------------------------------------------------------ status

    async def _write_statuses(
        self,
        world: World,
        plans: dict[tuple[str, str], aliases_mod.FunctionPlan],
        refused: dict[tuple[str, str], str],
        sources: list[EventSource],
    ) -> None:
        running = self.platform.running()
        for key, fn in world.functions.items():
            latest_key = (*key, LATEST)
            want = latest_shim(fn, world.maps_in(fn.namespace), world.secrets_in(fn.namespace))
            current = running.get(latest_key)
            bundle = self._code.get(latest_key)
            await self.store.set_status(
                fn,
                status_mod.function_status(
                    fn,
                    previous=fn.status,
                    current=current is not None and current.config_hash == want.config_hash,
                    serving=current is not None,
                    failure=self._failures.get(latest_key),
                    url=self.url_of(*key) if fn.spec.url else "",
                    code_sha256=bundle.sha256 if bundle else "",
                    warning=refused.get(key) or (plans[key].problem or (None, None))[1],
                ),
            )
        by_key = {(s.namespace, s.name): s for s in sources}
        for esm in world.event_sources:
            source = by_key[(esm.namespace, esm.name)]
            await self.store.set_status(esm, status_mod.event_source_status(esm, source))
        for key, plan_ in plans.items():
            for a in plan_.aliases:
                await self.store.set_status(a.obj, self._alias_status(key, a, plan_))
            for number, obj in world.numbered(key).items():
                status = self._version_provisioned(key, number, obj, plan_)
                await self.store.set_status(obj, status)

    def _ready_count(self, key: ShimKey) -> int:
        observed = self._observed.get(key)
        return observed.provisioned_ready if observed else 0

    def _alias_status(
        self, key: tuple[str, str], a: aliases_mod.AliasPlan, plan_: aliases_mod.FunctionPlan
    ) -> dict[str, Any]:
        spec: AliasSpec = a.obj.spec
        requested = spec.provisioned_concurrency
        allocated = 0 if plan_.problem else sum(a.provisioned.values())
        # A version shared with other provisioned configurations is shared pro rata.
        ready = 0
        for version, n in a.provisioned.items():
            total = plan_.provisioned.get(version, 0)
            if total:
                ready += min(n, self._ready_count((*key, version)) * n // total)
        problem = a.problem or plan_.problem
        return status_mod.alias_status(
            a.obj,
            arn=function_arn(self.settings.region, account_for(key[0]), key[1], a.name),
            url=self.url_of(*key, a.name) if spec.url else "",
            problem=problem,
            provisioned=(requested, allocated, ready),
        )

    def _version_provisioned(
        self, key: tuple[str, str], number: str, obj: ApiObject, plan_: aliases_mod.FunctionPlan
    ) -> dict[str, Any]:
        requested = obj.spec.provisioned_concurrency
        status = dict(obj.status)
        if requested or status.get("provisionedConcurrency"):
            total = plan_.provisioned.get(number, 0)
            ready = self._ready_count((*key, number))
            share = 0 if not total else min(requested, ready * requested // total)
            status["provisionedConcurrency"] = {
                "requested": requested,
                "allocated": 0 if plan_.problem else requested,
                "ready": share,
            }
        return status
