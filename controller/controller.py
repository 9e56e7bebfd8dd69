"""The reconcile loop: declared objects -> running shims, routes and status.

Each pass is level-based: it reads every object, computes the desired shims (``reconcile``),
carries out the plan on the platform, republishes every route and rewrites every status. Failed
starts are remembered per configuration hash and retried with backoff (or, when permanent, only
after the spec changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from klambda.controller import status as status_mod
from klambda.controller.api.arn import account_for, function_arn
from klambda.controller.api.objects import ApiObject
from klambda.controller.api.routes import LATEST, FunctionRoute, VersionTarget, url_id
from klambda.controller.api.shim_config import ShimConfig
from klambda.controller.api.types import FunctionSpec
from klambda.controller.code import CodeBundle, CodeFetchFailed, materialize
from klambda.controller.platform import Platform, StartFailed
from klambda.controller.reconcile import (
    DesiredShim,
    ShimKey,
    Stop,
    desired_shims,
    plan,
)
from klambda.controller.store import ObjectStore

log = logging.getLogger(__name__)


class RouteSink(Protocol):
    """Where routes go: the gateway's routing table."""

    def publish(self, route: FunctionRoute) -> None: ...

    def withdraw(self, namespace: str, name: str) -> None: ...


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
    idle_timeout: float = 300.0
    """Seconds an idle environment is kept warm."""
    max_environments: int = 64
    """Environments per shim at most."""


@dataclass
class Failure:
    config_hash: str
    reason: str
    message: str
    permanent: bool
    attempts: int = 1
    retry_at: float = 0.0


@dataclass
class Controller:
    store: ObjectStore
    platform: Platform
    routes: RouteSink
    settings: ControllerSettings
    _failures: dict[ShimKey, Failure] = field(default_factory=dict)
    _code: dict[ShimKey, CodeBundle] = field(default_factory=dict)
    _published: set[tuple[str, str]] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    passes: int = 0

    def kick(self) -> None:
        """Asks for a pass soon (a shim died, a timer fired)."""
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.resync_period)
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward

    async def _forward_store_changes(self) -> None:
        seen = self.store.revision
        while True:
            seen = await self.store.wait_for_change(seen)
            self._wake.set()

    # ------------------------------------------------------------------ one pass

    async def reconcile(self) -> None:
        functions = self.store.list("Function")
        config_maps = {(o.namespace, o.name): o.spec for o in self.store.list("ConfigMap")}
        desired = desired_shims(functions, config_maps)
        now = time.monotonic()
        steps = []
        for action in plan(desired, self.platform.running()):
            if isinstance(action, Stop):
                steps.append(self._stop(action.current.key))
            elif self._due(action.desired, now):
                steps.append(self._start(action.desired, config_maps))
        if steps:
            await asyncio.gather(*steps)
        for fn in functions:
            self._publish_route(fn, desired)
            await self.store.set_status(fn, self._status(fn, desired))
        live = {(fn.namespace, fn.name) for fn in functions}
        for namespace, name in self._published - live:
            self.routes.withdraw(namespace, name)
        self._published = live
        for key in list(self._failures):
            if key not in desired:
                del self._failures[key]
        self.passes += 1

    def _due(self, want: DesiredShim, now: float) -> bool:
        failure = self._failures.get(want.key)
        if failure is None or failure.config_hash != want.config_hash:
            return True
        return not failure.permanent and now >= failure.retry_at

    async def _stop(self, key: ShimKey) -> None:
        await self.platform.stop(key)
        self._code.pop(key, None)

    async def _start(
        self, want: DesiredShim, config_maps: dict[tuple[str, str], dict[str, str]]
    ) -> None:
        maps = {name: data for (ns, name), data in config_maps.items() if ns == want.namespace}
        try:
            try:
                bundle = await materialize(want.spec.code, self.settings.data_dir / "code", maps)
            except CodeFetchFailed as e:
                raise StartFailed("CodeFetchFailed", str(e)) from e
            await self.platform.start(self._shim_config(want, bundle))
        except StartFailed as e:
            self._record_failure(want, e)
            return
        self._code[want.key] = bundle
        self._failures.pop(want.key, None)

    def _record_failure(self, want: DesiredShim, e: StartFailed) -> None:
        previous = self._failures.get(want.key)
        attempts = (
            previous.attempts + 1 if previous and previous.config_hash == want.config_hash else 1
        )
        delay = min(60.0, 2.0 ** (attempts - 1))
        log.warning("%s/%s: %s: %s (attempt %d)", want.namespace, want.name, e.reason, e, attempts)
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
            code_dir=str(bundle.directory),
            function_arn=function_arn(s.region, account_for(want.namespace), want.name),
            log_dir=str(self.log_dir(want.namespace, want.name)),
            memory_size=spec.memory_size,
            timeout=float(spec.timeout),
            environment=spec.env,
            region=s.region,
            namespace=want.namespace,
            config_hash=want.config_hash,
            max_environments=s.max_environments,
            idle_timeout=s.idle_timeout,
        )

    def log_dir(self, namespace: str, name: str) -> Path:
        return self.settings.data_dir / "logs" / namespace / name

    # ------------------------------------------------------------------ routes and status

    def url_of(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        uid = url_id(name, qualifier, namespace, self.settings.default_namespace)
        return f"{self.settings.gateway_url}/lambda-url/{uid}/"

    def _publish_route(self, fn: ApiObject, desired: dict[ShimKey, DesiredShim]) -> None:
        spec: FunctionSpec = fn.spec
        key = (fn.namespace, fn.name, LATEST)
        failure = self._failures.get(key)
        endpoints = self.platform.endpoints(key)
        problem = problem_type = None
        if not endpoints and failure is not None:
            problem = f"{failure.reason}: {failure.message}"
            problem_type = (
                "InvalidRuntimeException"
                if failure.reason == "InvalidRuntime"
                else "ResourceNotReadyException"
            )
        target = VersionTarget(
            LATEST,
            endpoints,
            float(spec.timeout),
            problem,
            problem_type or "ResourceNotReadyException",
        )
        self.routes.publish(
            FunctionRoute(
                fn.namespace,
                fn.name,
                function_arn(self.settings.region, account_for(fn.namespace), fn.name),
                spec.url,
                {LATEST: target},
            )
        )

    def _status(self, fn: ApiObject, desired: dict[ShimKey, DesiredShim]) -> dict[str, Any]:
        key = (fn.namespace, fn.name, LATEST)
        running = self.platform.running().get(key)
        want = desired[key]
        bundle = self._code.get(key)
        return status_mod.function_status(
            fn,
            previous=fn.status,
            current=running is not None and running.config_hash == want.config_hash,
            serving=running is not None,
            failure=self._failures.get(key),
            url=self.url_of(fn.namespace, fn.name) if fn.spec.url else "",
            code_sha256=bundle.sha256 if bundle else "",
        )
