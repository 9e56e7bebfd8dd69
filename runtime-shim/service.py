"""The gRPC face of the shim (``klambda.shim.v1.Shim``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from klambda.protos import shim_pb2, shim_pb2_grpc
from klambda.shim.environment import Outcome
from klambda.shim.pool import Busy, CannotStart
from klambda.shim.shim import InvokeArgs, Shim

FUNCTION_ERROR = "Unhandled"

log = logging.getLogger(__name__)


class ShimService(shim_pb2_grpc.ShimServicer):
    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.draining = False
        """Set on SIGTERM (``drain``): streams answer what runs, then end; new work is refused."""
        self._idle_enders: set[Callable[[], None]] = set()

    def drain(self) -> None:
        """Refuses new requests and ends every stream once its invocations are answered, so the
        gateway reconnects elsewhere and the server can stop before its grace period runs out."""
        self.draining = True
        self.shim.serving = False
        for end_if_idle in list(self._idle_enders):
            end_if_idle()

    def _args(self, request: shim_pb2.InvokeRequest, deadline: float | None) -> InvokeArgs:
        return InvokeArgs(
            payload=request.payload,
            invoked_function_arn=request.invoked_function_arn,
            request_id=request.request_id,
            trace_id=request.trace_id,
            client_context=request.client_context,
            cognito_identity=request.cognito_identity,
            deadline=deadline,
            tail_log=request.tail_log,
        )

    def _response(self, outcome: Outcome, request_id: str) -> shim_pb2.InvokeResponse:
        return shim_pb2.InvokeResponse(
            payload=outcome.payload,
            function_error=FUNCTION_ERROR if outcome.error_type else "",
            error_type=outcome.error_type or "",
            executed_version=self.shim.config.version,
            log_tail=outcome.log_tail,
            duration_ms=outcome.duration_ms,
            init_duration_ms=outcome.init_duration_ms or 0.0,
            max_memory_used_mb=outcome.max_memory_used_mb,
            request_id=request_id,
        )

    def submit(
        self,
        request: shim_pb2.InvokeRequest,
        respond: Callable[[shim_pb2.InvokeResponse], None],
    ) -> asyncio.Task[Outcome] | None:
        """Starts one invocation and calls ``respond`` with its answer when it ends (a
        callback, not a task per invocation: the data path's hot path). A refusal says whether
        it started (the gateway sends one that did not to another environment)."""
        if self.draining:
            respond(_refused(request, "UNAVAILABLE", "the shim is draining"))
            return None
        deadline = request.timeout_ms / 1000 if request.timeout_ms else None
        task = self.shim.start_invocation(self._args(request, deadline))
        task.add_done_callback(lambda done: respond(self._result(done, request)))
        return task

    def _result(
        self, task: asyncio.Task[Outcome], request: shim_pb2.InvokeRequest
    ) -> shim_pb2.InvokeResponse:
        if task.cancelled():  # the shim is closing
            return _refused(request, "INTERNAL", "the invocation was cancelled")
        error = task.exception()
        if error is None:
            return self._response(task.result(), request.request_id)
        if isinstance(error, Busy):
            return _refused(request, "RESOURCE_EXHAUSTED", str(error))
        if isinstance(error, CannotStart):
            return _refused(request, "UNAVAILABLE", str(error))
        # answered, or the caller would wait out its deadline
        log.error("invocation %s failed in the shim", request.request_id, exc_info=error)
        return _refused(request, "INTERNAL", f"{type(error).__name__}: {error}")

    async def _answer(self, request: shim_pb2.InvokeRequest) -> shim_pb2.InvokeResponse:
        """One invocation's answer, awaited (the gRPC stream)."""
        answer: asyncio.Future[shim_pb2.InvokeResponse] = asyncio.get_running_loop().create_future()

        def respond(response: shim_pb2.InvokeResponse) -> None:
            if not answer.done():  # the stream may have stopped waiting
                answer.set_result(response)

        self.submit(request, respond)
        return await answer

    def on_drain(self, end_if_idle: Callable[[], None]) -> Callable[[], None]:
        """Registers a stream's "end me once idle" for ``drain``; returns its unregistration."""
        self._idle_enders.add(end_if_idle)
        return lambda: self._idle_enders.discard(end_if_idle)

    async def InvokeStream(
        self,
        request_iterator: AsyncIterator[shim_pb2.InvokeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[shim_pb2.InvokeResponse]:
        """Runs every request concurrently and answers each as it completes.

        The stream ends once the caller has closed its side and every answer is out. Headers go
        out at once: the gateway waits for them before its first request, so a refusal (the
        caller-token check) reaches it as a refusal, never as a failed write.
        """
        await context.send_initial_metadata(())
        answers: asyncio.Queue[shim_pb2.InvokeResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        def end_if_idle() -> None:
            if self.draining and not running:
                answers.put_nowait(None)

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            end_if_idle()

        async def run(request: shim_pb2.InvokeRequest) -> None:
            await answers.put(await self._answer(request))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.create_task(run(request))
                    running.add(task)
                    task.add_done_callback(finished)
                while running:
                    await asyncio.gather(*running, return_exceptions=True)
            finally:  # a broken stream ends the response side too (invocations still finish)
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        unregister = self.on_drain(end_if_idle)
        end_if_idle()
        try:
            while (answer := await answers.get()) is not None:
                yield answer
        finally:
            unregister()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

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


def _refused(request: shim_pb2.InvokeRequest, code: str, message: str) -> shim_pb2.InvokeResponse:
    return shim_pb2.InvokeResponse(
        request_id=request.request_id, refused=code, refused_message=message
    )
