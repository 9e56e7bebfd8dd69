"""The one invocation path shared by function URLs and the Invoke API.

Resolves the qualifier to a version, picks a shim, calls it with a deadline, and records metrics.
A shim that is unreachable never started the invocation, so that (and only that) is retried once
against a fresh lookup: the route may have just rolled to a new shim.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from klambda.controller.api.arn import function_arn
from klambda.controller.api.routes import LATEST, FunctionRoute, VersionTarget
from klambda.gateway.errors import (
    ERROR_TYPES,
    ResourceNotFound,
    ServiceError,
    TooManyRequests,
)
from klambda.gateway.metrics import Metrics
from klambda.gateway.routing import RoutingTable
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shim_client import ShimClient, ShimUnavailable
from klambda.protos import shim_pb2


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


class Invoker:
    def __init__(
        self, table: RoutingTable, client: ShimClient, metrics: Metrics, settings: GatewaySettings
    ) -> None:
        self.table = table
        self.client = client
        self.metrics = metrics
        self.settings = settings

    @staticmethod
    def new_request_id() -> str:
        return str(uuid.uuid4())

    def arn(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.region, self.table.account(namespace), name, qualifier)

    def route(self, namespace: str, name: str, qualifier: str | None = None) -> FunctionRoute:
        route = self.table.get(namespace, name)
        if route is None:
            arn = self.arn(namespace, name, qualifier)
            raise ResourceNotFound(f"Function not found: {arn}")
        return route

    def target(self, route: FunctionRoute, qualifier: str | None) -> VersionTarget:
        version = qualifier or LATEST
        target = route.versions.get(version)
        if target is None:
            arn = self.arn(route.namespace, route.name, qualifier)
            raise ResourceNotFound(f"Function not found: {arn}")
        if target.problem is not None:
            raise ERROR_TYPES.get(target.problem_type, ServiceError)(target.problem)
        return target

    async def invoke(self, inv: Invocation) -> InvokeResult:
        request_id = inv.request_id or str(uuid.uuid4())
        for attempt in (1, 2):
            route = self.route(inv.namespace, inv.name, inv.qualifier)
            target = self.target(route, inv.qualifier)
            if not target.endpoints:
                raise ServiceError(f"no environment is ready for {route.name}:{target.version}")
            address = self.client.pick(target.endpoints)
            request = shim_pb2.InvokeRequest(
                request_id=request_id,
                payload=inv.payload,
                invoked_function_arn=self.arn(inv.namespace, inv.name, inv.qualifier),
                client_context=inv.client_context,
                tail_log=inv.tail_log,
            )
            deadline = target.timeout + self.settings.init_allowance + 5.0
            try:
                response = await self.client.invoke(address, request, deadline)
            except ShimUnavailable:
                if attempt == 2:
                    raise
                continue
            except TooManyRequests:
                self.metrics.throttles.labels(inv.namespace, inv.name).inc()
                raise
            return self._record(inv, request_id, response)
        raise AssertionError("unreachable")

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
