"""The one invocation path shared by function URLs and the Invoke API.

Resolves the qualifier to a version (alias weights per request), admits the invocation under
the concurrency limits, asks the platform to start the version if nothing runs it, picks a
shim, calls it with a deadline, and records metrics. A shim that is unreachable never started
the invocation, so that (and only that) is retried once against a fresh lookup: the route may
have just rolled to a new shim.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from klambda.api.arn import FunctionRef, function_arn
from klambda.api.routes import FunctionRoute, VersionTarget
from klambda.gateway.async_policy import trace_header
from klambda.gateway.auth import Identity, authorize
from klambda.gateway.concurrency import ConcurrencyLimiter
from klambda.gateway.errors import (
    ERROR_TYPES,
    ResourceNotFound,
    ServiceError,
    TooManyRequests,
)
from klambda.gateway.metrics import Metrics
from klambda.gateway.routing import RoutingTable
from klambda.gateway.selection import Selection, UnknownQualifier, select
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shared_concurrency import SharedConcurrency
from klambda.gateway.shim_client import ShimBusy, ShimClient, ShimUnavailable
from klambda.protos import shim_pb2

TRIES = 3
"""Pods one invocation may try when they are unavailable (draining, unreachable): it did not
start there. Busy pods are tried for up to ``GatewaySettings.busy_wait`` instead."""
BUSY_PAUSE = 0.05
"""Seconds between rounds over pods that were all busy."""


class Activator(Protocol):
    """The platform side that starts versions on demand and learns which are in use."""

    def touch(self, namespace: str, name: str, version: str) -> None: ...

    async def activate(self, namespace: str, name: str, version: str, timeout: float) -> None: ...


@dataclass
class InvokeResult:
    request_id: str
    payload: bytes
    function_error: str
    error_type: str
    executed_version: str
    log_tail: bytes
    duration_ms: float
    init_duration_ms: float


@dataclass
class Invocation:
    namespace: str
    name: str
    qualifier: str | None
    payload: bytes
    request_id: str = ""
    tail_log: bool = False
    client_context: str = ""
    lineage: int | None = None
    """Hops through klambda before this invocation (async events, destinations, queues):
    passed to the function in its trace header. None: not part of such a chain."""


class Invoker:
    def __init__(
        self,
        table: RoutingTable,
        client: ShimClient,
        metrics: Metrics,
        settings: GatewaySettings,
        activator: Activator | None = None,
        shared: SharedConcurrency | None = None,
    ) -> None:
        self.table = table
        self.client = client
        self.metrics = metrics
        self.settings = settings
        self.activator = activator
        self.limiter = ConcurrencyLimiter(settings.concurrency_limit)
        self.shared = shared
        """The limits kept in Redis with the other replicas; None: this replica's alone."""
        self._random = random.Random()

    @staticmethod
    def new_request_id() -> str:
        return str(uuid.uuid4())

    def arn(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.region, self.table.account(namespace), name, qualifier)

    def _not_found(self, namespace: str, name: str, qualifier: str | None) -> ResourceNotFound:
        return ResourceNotFound(f"Function not found: {self.arn(namespace, name, qualifier)}")

    def route(self, namespace: str, name: str, qualifier: str | None = None) -> FunctionRoute:
        route = self.table.get(namespace, name)
        if route is None:
            raise self._not_found(namespace, name, qualifier)
        return route

    def authorized_route(
        self,
        ref: FunctionRef,
        identity: Identity,
        action: str,
        context: Mapping[str, str],
    ) -> FunctionRoute:
        """The function a caller named, once they may ``action`` it.

        A bare name means the caller's own account (namespace), as in Lambda. Authorization
        comes before existence, so a caller who may not act learns nothing of which functions
        exist (403 either way).
        """
        account = ref.account or identity.principal.account
        namespace = (
            identity.principal.namespace
            if ref.account is None
            else self.table.namespace_of(ref.account)
        )
        route = self.table.get(namespace, ref.name) if namespace else None
        resource = function_arn(self.settings.region, account, ref.name, ref.qualifier)
        authorize(
            identity,
            action,
            resource,
            account,
            route.policy if route else None,
            {**context, "lambda:FunctionArn": resource},
            namespace,
        )
        if route is None:
            raise ResourceNotFound(f"Function not found: {resource}")
        return route

    def select(self, route: FunctionRoute, qualifier: str | None) -> Selection:
        try:
            return select(route, qualifier, self._random.random())
        except UnknownQualifier:
            raise self._not_found(route.namespace, route.name, qualifier) from None

    def check(self, route: FunctionRoute, qualifier: str | None) -> None:
        """Raises the error an invocation would meet before running (DryRun)."""
        self._usable(route.versions.get(self.select(route, qualifier).version))

    def _usable(self, target: VersionTarget | None) -> VersionTarget:
        if target is None:
            raise ServiceError("the selected version is not known to the platform")
        if target.problem is not None:
            raise ERROR_TYPES.get(target.problem_type, ServiceError)(target.problem)
        return target

    async def _target(self, inv: Invocation, version: str) -> VersionTarget:
        target = self._usable(self.route(inv.namespace, inv.name).versions.get(version))
        saturated = getattr(self.activator, "saturated", None)
        if (
            target.endpoints
            and saturated is not None
            and all(self.client.inflight.get(a, 0) > 0 for a in target.endpoints)
        ):
            saturated(inv.namespace, inv.name, version, len(target.endpoints))
        if target.endpoints or not target.activatable or self.activator is None:
            if not target.endpoints:
                raise ServiceError(f"no environment is ready for {inv.name}:{version}")
            return target
        await self.activator.activate(
            inv.namespace, inv.name, version, self.settings.activation_timeout
        )
        target = self._usable(self.route(inv.namespace, inv.name).versions.get(version))
        if not target.endpoints:
            raise ServiceError(f"{inv.name}:{version} did not start in time")
        return target

    async def invoke(self, inv: Invocation) -> InvokeResult:
        request_id = inv.request_id or self.new_request_id()
        route = self.route(inv.namespace, inv.name, inv.qualifier)
        chosen = self.select(route, inv.qualifier)
        key = (inv.namespace, inv.name)
        reserved = route.reserved_concurrency
        self.limiter.reserved_total = self.table.reserved_total()
        try:
            holder = await self._admit(key, reserved)
        except TooManyRequests:
            self.metrics.throttles.labels(inv.namespace, inv.name).inc()
            raise
        try:
            if self.activator is not None:  # $LATEST too: on Kubernetes it scales to zero
                self.activator.touch(inv.namespace, inv.name, chosen.version)
            return await self._call(inv, chosen, request_id)
        finally:
            if holder is None:
                self.limiter.release(key, reserved)
            elif self.shared is not None:
                await self.shared.release(holder)

    async def _admit(self, key: tuple[str, str], reserved: int | None) -> str | None:
        """Counts the invocation in: with the other replicas (returns its holder) or here."""
        if self.shared is not None:
            return await self.shared.acquire(key, reserved, self.limiter.unreserved_pool)
        self.limiter.acquire(key, reserved)
        return None

    async def _call(self, inv: Invocation, chosen: Selection, request_id: str) -> InvokeResult:
        refused: set[str] = set()
        unavailable = 0
        busy_until = time.monotonic() + self.settings.busy_wait
        while True:
            target = await self._target(inv, chosen.version)
            untried = tuple(a for a in target.endpoints if a not in refused)
            address = self.client.pick(untried or target.endpoints)
            request = shim_pb2.InvokeRequest(
                request_id=request_id,
                payload=inv.payload,
                invoked_function_arn=self.arn(inv.namespace, inv.name, inv.qualifier),
                client_context=inv.client_context,
                tail_log=inv.tail_log,
                trace_id="" if inv.lineage is None else trace_header(request_id, inv.lineage),
            )
            deadline = target.timeout + self.settings.init_allowance + 5.0
            try:
                version = (inv.namespace, inv.name, target.version)
                response = await self.client.invoke(address, request, deadline, version)
            except ShimUnavailable:
                unavailable += 1
                if unavailable == TRIES:
                    raise
                refused.add(address)
                continue
            except ShimBusy:
                refused.add(address)
                if any(a not in refused for a in target.endpoints):
                    continue  # another pod may be free
                if time.monotonic() < busy_until:
                    refused.clear()  # each was busy once; any may be free by now
                    await asyncio.sleep(BUSY_PAUSE)
                    continue
                self.metrics.throttles.labels(inv.namespace, inv.name).inc()
                raise
            except TooManyRequests:
                self.metrics.throttles.labels(inv.namespace, inv.name).inc()
                raise
            return self._record(inv, request_id, response)

    def _record(self, inv: Invocation, request_id: str, r: shim_pb2.InvokeResponse) -> InvokeResult:
        labels = (inv.namespace, inv.name, r.executed_version)
        m = self.metrics
        m.invocations.labels(*labels).inc()
        m.duration.labels(*labels).observe(r.duration_ms / 1000)
        if r.function_error:
            m.errors.labels(*labels).inc()
        if r.init_duration_ms:
            m.cold_starts.labels(*labels).inc()
            m.init_duration.labels(*labels).observe(r.init_duration_ms / 1000)
        return InvokeResult(
            request_id,
            r.payload,
            r.function_error,
            r.error_type,
            r.executed_version,
            r.log_tail,
            r.duration_ms,
            r.init_duration_ms,
        )
