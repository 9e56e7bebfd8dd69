"""The gRPC face of the shim (``klambda.shim.v1.Shim``)."""

from __future__ import annotations

import time

import grpc

from klambda.protos import shim_pb2, shim_pb2_grpc
from klambda.shim.pool import Busy
from klambda.shim.shim import InvokeArgs, Shim

FUNCTION_ERROR = "Unhandled"


class ShimService(shim_pb2_grpc.ShimServicer):
    def __init__(self, shim: Shim) -> None:
        self.shim = shim

    async def Invoke(
        self, request: shim_pb2.InvokeRequest, context: grpc.aio.ServicerContext
    ) -> shim_pb2.InvokeResponse:
        remaining = context.time_remaining()
        args = InvokeArgs(
            payload=request.payload,
            invoked_function_arn=request.invoked_function_arn,
            request_id=request.request_id,
            trace_id=request.trace_id,
            client_context=request.client_context,
            cognito_identity=request.cognito_identity,
            deadline=remaining,
            tail_log=request.tail_log,
        )
        try:
            outcome = await self.shim.invoke(args)
        except Busy as e:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        return shim_pb2.InvokeResponse(
            payload=outcome.payload,
            function_error=FUNCTION_ERROR if outcome.error_type else "",
            error_type=outcome.error_type or "",
            executed_version=self.shim.config.version,
            log_tail=outcome.log_tail,
            duration_ms=outcome.duration_ms,
            init_duration_ms=outcome.init_duration_ms or 0.0,
            max_memory_used_mb=outcome.max_memory_used_mb,
        )

    async def Status(
        self, request: shim_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> shim_pb2.StatusResponse:
        return self._status()

    async def Provision(
        self, request: shim_pb2.ProvisionRequest, context: grpc.aio.ServicerContext
    ) -> shim_pb2.StatusResponse:
        self.shim.pool.set_provisioned(request.count)
        return self._status()

    def _status(self) -> shim_pb2.StatusResponse:
        c = self.shim.config
        pool = self.shim.pool
        return shim_pb2.StatusResponse(
            function_name=c.function_name,
            version=c.version,
            config_hash=c.config_hash,
            environments=pool.size,
            busy=pool.busy,
            max_environments=pool.max_environments,
            provisioned_target=pool.provisioned_target,
            provisioned_ready=pool.provisioned_ready,
            idle_seconds=pool.idle_seconds(time.monotonic()),
        )
