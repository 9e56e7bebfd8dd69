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

from klambda.controller import aliases as aliases_mod
from klambda.controller import publishing
from klambda.controller import status as status_mod
from klambda.controller.api.arn import account_for, function_arn
from klambda.controller.api.objects import ApiObject
from klambda.controller.api.policy import parse_policy
from klambda.controller.api.routes import (
    LATEST,
    AliasRoute,
    FunctionRoute,
    VersionTarget,
    url_id,
)
from klambda.controller.api.shim_config import ShimConfig
from klambda.controller.api.types import AliasSpec, FunctionSpec
from klambda.controller.code import CodeBundle
from klambda.controller.configuration import function_configuration, revision_id
from klambda.controller.platform import Observation, Platform, StartFailed
from klambda.controller.reconcile import (
    DesiredShim,
    Provision,
    ShimKey,
    Stop,
    latest_shim,
    plan,
)
from klambda.controller.store import ObjectStore

log = logging.getLogger(__name__)


class RouteSink(Protocol):
    """Where routes go: the gateway's routing table."""

    def publish(self, route: FunctionRoute) -> None: ...

    def withdraw(self, namespace: str, name: str) -> None: ...

    def mark_synced(self) -> None: ...


@dataclass(frozen=True)
class ControllerSettings:
    data_dir: Path
    """Code, logs and shim state live under here."""
    gateway_url: str = "http://127.0.0.1:8080"
    """Base URL users reach the gateway at; function URLs in status start with it."""
    region: str = "us-east-1"
    """Region in ARNs and AWS_REGION."""
    default_namespace: str = "default"
    """The namespace whose URL ids carry no namespace suffix."""
    resync_period: float = 10.0
    """Seconds between passes when nothing changed (retries, crashed shims)."""
    settle_period: float = 0.25
    """Seconds between passes while provisioned environments are still starting."""
    watch_period: float = 2.0
    """Seconds between passes while shims with provisioned or on-demand versions run."""
    idle_timeout: float = 300.0
    """Seconds an idle environment (and an unreferenced version's shim) is kept warm."""
    max_environments: int = 64
    """Environments per shim at most."""
    concurrency_limit: int = 1000
    """The regional limit: environments busy at once across all functions."""


@dataclass
class Failure:
    config_hash: str
    reason: str
    message: str
    permanent: bool
    attempts: int = 1
    retry_at: float = 0.0


@dataclass
class World:
    """Everything one pass reads, grouped by function."""

    functions: dict[tuple[str, str], ApiObject]
    versions: dict[tuple[str, str], list[ApiObject]]
    aliases: dict[tuple[str, str], list[ApiObject]]
    config_maps: dict[tuple[str, str], dict[str, str]]

    def maps_in(self, namespace: str) -> dict[str, dict[str, str]]:
        return {name: data for (ns, name), data in self.config_maps.items() if ns == namespace}

    def numbered(self, key: tuple[str, str]) -> dict[str, ApiObject]:
        """Version objects by number (the first object to get each number)."""
        out: dict[str, ApiObject] = {}
        for obj in sorted(self.versions.get(key, []), key=lambda o: o.creation_key):
            number = obj.status.get("version")
            if number and number not in out:
                out[number] = obj
        return out


def _group(objects: list[ApiObject]) -> dict[tuple[str, str], list[ApiObject]]:
    out: dict[tuple[str, str], list[ApiObject]] = {}
    for obj in objects:
        out.setdefault((obj.namespace, obj.spec.function_name), []).append(obj)
    return out


@dataclass
class Controller:
    store: ObjectStore
    platform: Platform
    routes: RouteSink
    settings: ControllerSettings
    _failures: dict[ShimKey, Failure] = field(default_factory=dict)
    _code: dict[ShimKey, CodeBundle] = field(default_factory=dict)
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), period)
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward

    async def _forward_store_changes(self) -> None:
        seen = self.store.revision
        while True:
            seen = await self.store.wait_for_change(seen)
            self._wake.set()

    # ------------------------------------------------------------------ activation

    def touch(self, namespace: str, name: str, version: str) -> None:
        """The gateway ran ``version``: keep its shim while it is in use."""
        self._used[(namespace, name, version)] = time.monotonic()

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
        functions = {(o.namespace, o.name): o for o in self.store.list("Function")}
        return World(
            functions,
            _group(self.store.list("Version")),
            _group(self.store.list("Alias")),
            {(o.namespace, o.name): o.spec for o in self.store.list("ConfigMap")},
        )

    async def reconcile(self) -> None:
        world = self._read()
        await self._publish_versions(world)
        world = self._read()
        granted, refused = aliases_mod.honoured_reservations(
            {k: fn.spec.reserved_concurrency for k, fn in world.functions.items()},
            sorted(world.functions, key=lambda k: world.functions[k].creation_key),
            self.settings.concurrency_limit,
        )
        plans = {
            key: aliases_mod.plan_function(
                key in world.functions,
                world.numbered(key),
                world.aliases.get(key, []),
                granted.get(key),
                self.settings.max_environments,
            )
            for key in set(world.functions) | set(world.aliases)
        }
        desired = self._desired(world, plans)
        # Routes first: a moved alias takes effect at once; a version whose shim is still
        # starting is activatable, so callers wait for it rather than reach the old target.
        for key, fn in world.functions.items():
            self._publish_route(world, fn, plans[key], granted.get(key))
        await self._carry_out(world, desired, granted, plans)
        await self._observe(desired)
        for key, fn in world.functions.items():
            self._publish_route(world, fn, plans[key], granted.get(key))
        for key in self._published - set(world.functions):
            self.routes.withdraw(*key)
        self.routes.mark_synced()
        self._published = set(world.functions)
        await self._write_statuses(world, plans, refused)
        for key in list(self._failures):
            if key not in desired:
                del self._failures[key]
        self.passes += 1
        async with self._passed:
            self._passed.notify_all()

    def _desired(
        self, world: World, plans: dict[tuple[str, str], aliases_mod.FunctionPlan]
    ) -> dict[ShimKey, DesiredShim]:
        now = time.monotonic()
        out: dict[ShimKey, DesiredShim] = {}
        for key, fn in world.functions.items():
            latest = latest_shim(fn, world.maps_in(fn.namespace))
            out[latest.key] = latest
            plan_ = plans[key]
            wanted = {v for a in plan_.aliases if a.problem is None for v in a.versions}
            wanted |= set(plan_.provisioned)
            for number, obj in world.numbered(key).items():
                skey = (*key, number)
                used = self._used.get(skey)
                observed = self._observed.get(skey)
                idle = observed.idle_seconds if observed else 0.0
                recent = used is not None and min(now - used, idle) < self.settings.idle_timeout
                if number in wanted or recent:
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
                want = latest_shim(fn, world.maps_in(fn.namespace))
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
        self,
        world: World,
        desired: dict[ShimKey, DesiredShim],
        granted: dict[tuple[str, str], int],
        plans: dict[tuple[str, str], aliases_mod.FunctionPlan],
    ) -> None:
        now = time.monotonic()
        steps = []
        for action in plan(desired, self.platform.running()):
            if isinstance(action, Stop):
                steps.append(self._stop(action.current.key))
            elif isinstance(action, Provision):
                steps.append(self.platform.provision(action.key, action.count))
            elif self._due(action.desired, now):
                fn_key = (action.desired.namespace, action.desired.name)
                fn = world.functions[fn_key]
                steps.append(
                    self._start(action.desired, world, fn, plans[fn_key], granted.get(fn_key))
                )
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
        self,
        want: DesiredShim,
        world: World,
        fn: ApiObject,
        plan_: aliases_mod.FunctionPlan,
        reserved: int | None,
    ) -> None:
        try:
            bundle = await self.platform.prepare_code(
                want.spec.code, world.maps_in(want.namespace), want.code_sha256, want.version
            )
            await self.platform.start(self._shim_config(want, bundle))
        except StartFailed as e:
            self._record_failure(want, e)
            return
        self._code[want.key] = bundle
        self._failures.pop(want.key, None)
        # Switch traffic now: the old shim (if any) drains after a short delay.
        self._publish_route(world, fn, plan_, reserved)

    def _record_failure(self, want: DesiredShim, e: StartFailed) -> None:
        previous = self._failures.get(want.key)
        same = previous is not None and previous.config_hash == want.config_hash
        attempts = previous.attempts + 1 if previous and same else 1
        delay = min(60.0, 2.0 ** (attempts - 1))
        log.warning("%s/%s:%s: %s: %s (attempt %d)", *want.key, e.reason, e, attempts)
        self._failures[want.key] = Failure(
            want.config_hash, e.reason, e.message, e.permanent, attempts, time.monotonic() + delay
        )

    def _shim_config(self, want: DesiredShim, bundle: CodeBundle) -> ShimConfig:
        spec = want.spec
        s = self.settings
        return ShimConfig(
            function_name=want.name,
            version=want.version,
            runtime=spec.runtime,
            handler=spec.handler or "",
            code_dir=bundle.location,
            function_arn=function_arn(s.region, account_for(want.namespace), want.name),
            log_dir=str(self.log_dir(want.namespace, want.name)),
            memory_size=spec.memory_size,
            timeout=float(spec.timeout),
            environment=spec.env,
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

    def url_of(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        uid = url_id(name, qualifier, namespace, self.settings.default_namespace)
        return f"{self.settings.gateway_url}/lambda-url/{uid}/"

    def _target(
        self, key: ShimKey, spec: FunctionSpec, configuration: dict[str, Any]
    ) -> VersionTarget:
        failure = self._failures.get(key)
        endpoints = self.platform.endpoints(key)
        timeout = float(spec.timeout)
        if endpoints or failure is None:
            return VersionTarget(
                key[2], endpoints, timeout, activatable=not endpoints, configuration=configuration
            )
        problem_type = (
            "InvalidRuntimeException"
            if failure.reason == "InvalidRuntime"
            else "ResourceNotReadyException"
        )
        problem = f"{failure.reason}: {failure.message}"
        return VersionTarget(key[2], (), timeout, problem, problem_type, False, configuration)

    def _configuration(
        self, fn: ApiObject, spec: FunctionSpec, version: str, obj: ApiObject | None
    ) -> dict[str, Any]:
        bundle = self._code.get((fn.namespace, fn.name, version))
        status = obj.status if obj is not None else fn.status
        return function_configuration(
            namespace=fn.namespace,
            name=fn.name,
            region=self.settings.region,
            spec=spec,
            version=version,
            description=obj.spec.description if obj is not None else spec.description,
            code_sha256=status.get("codeSha256", "") or (bundle.sha256 if bundle else ""),
            code_size=bundle.size if bundle else 0,
            last_modified=(
                obj.manifest["metadata"].get("creationTimestamp", "")
                if obj
                else fn.status.get("lastModified", "")
            ),
            state=fn.status.get("state", "Pending") if obj is None else "Active",
            qualified=obj is not None,
        )

    def _publish_route(
        self,
        world: World,
        fn: ApiObject,
        plan_: aliases_mod.FunctionPlan,
        reserved: int | None,
    ) -> None:
        key = (fn.namespace, fn.name)
        versions = {
            LATEST: self._target(
                (*key, LATEST), fn.spec, self._configuration(fn, fn.spec, LATEST, None)
            )
        }
        for number, obj in world.numbered(key).items():
            spec = publishing.spec_of(obj.status)
            versions[number] = self._target(
                (*key, number), spec, self._configuration(fn, spec, number, obj)
            )
        alias_routes = {}
        for a in plan_.aliases:
            if a.problem is None:
                aspec: AliasSpec = a.obj.spec
                alias_routes[a.name] = AliasRoute(
                    a.name,
                    a.primary,
                    a.weights,
                    aspec.url,
                    aspec.description,
                    revision_id(a.obj.resource_version, a.name),
                    self.url_of(*key, a.name) if aspec.url else "",
                )
        self.routes.publish(
            FunctionRoute(
                fn.namespace,
                fn.name,
                function_arn(self.settings.region, account_for(fn.namespace), fn.name),
                fn.spec.url,
                versions,
                alias_routes,
                reserved,
                parse_policy(fn.spec.policy, resource_policy=True) if fn.spec.policy else None,
                fn.spec.policy,
                account_for(fn.namespace),
                self.url_of(*key) if fn.spec.url else "",
                str(fn.manifest["metadata"].get("creationTimestamp", "")),
            )
        )

    # ------------------------------------------------------------------ status

    async def _write_statuses(
        self,
        world: World,
        plans: dict[tuple[str, str], aliases_mod.FunctionPlan],
        refused: dict[tuple[str, str], str],
    ) -> None:
        running = self.platform.running()
        for key, fn in world.functions.items():
            latest_key = (*key, LATEST)
            want = latest_shim(fn, world.maps_in(fn.namespace))
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
