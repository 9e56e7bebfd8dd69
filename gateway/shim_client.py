"""gRPC client side of the shim contract: one long-lived stream per shim, many invocations on it.

A unary call per invocation costs about twice a message on an open stream (see
shared/reference/baselines.md), so each shim address gets one ``InvokeStream``; requests are
written on it and answers matched back by request id. A request that could not be written was
never seen by the shim (safe to send elsewhere); once written, a broken stream means the
invocation may have run, so it is reported as a service error, never retried.

Every stream carries the caller token of the version it calls (``api.shim_auth``), derived from
the platform key this gateway holds; a shim answers nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from klambda.api.shim_auth import call_metadata, caller_token
from klambda.gateway.errors import ServiceError, TooManyRequests
from klambda.protos import CLIENT_OPTIONS, shim_pb2, shim_pb2_grpc

log = logging.getLogger(__name__)


class ShimUnavailable(ServiceError):
    """The shim could not be reached; the invocation did not start there."""


class _Stream:
    """One InvokeStream: a writer lock, a reader task, and the answers awaited."""

    def __init__(self, stub: shim_pb2_grpc.ShimStub, token: str | None) -> None:
        self.token = token
        self.call: Any = stub.InvokeStream(metadata=call_metadata(token) if token else None)
        self.pending: dict[str, asyncio.Future[shim_pb2.InvokeResponse]] = {}
        self.write_lock = asyncio.Lock()
        self.broken = False
        self.opened = False
        """The shim's headers arrived: it took the stream (or refused it, and ended it)."""
        self.reader = asyncio.create_task(self._read(), name="shim-stream-reader")

    async def _read(self) -> None:
        try:
            async for answer in self.call:
                future = self.pending.pop(answer.request_id, None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except grpc.aio.AioRpcError as e:
            log.info("shim stream closed: %s", e.code().name)
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:  # nothing ran: say why
                log.error("a shim refused this gateway's caller token (platform key differs?)")
                self._fail(ServiceError("the function environment refused the gateway"))
        finally:
            self.broken = True
            self._fail(ServiceError("the function environment went away during the invocation"))

    def _fail(self, error: ServiceError) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    async def invoke(
        self, request: shim_pb2.InvokeRequest, timeout: float
    ) -> shim_pb2.InvokeResponse:
        if self.broken:  # ended between _stream() and now; nothing was sent
            raise ShimUnavailable("function environment unavailable: its stream closed")
        if not self.opened:
            await self._open()
        future = asyncio.get_running_loop().create_future()
        self.pending[request.request_id] = future
        try:
            async with self.write_lock:
                await self.call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as e:
            self.pending.pop(request.request_id, None)
            self.broken = True
            raise await self._why_unavailable(e) from e
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ServiceError("the invocation did not finish within its deadline") from None
        finally:  # an answer arriving later (or never) has nobody waiting for it
            self.pending.pop(request.request_id, None)

    async def _open(self) -> None:
        """Waits for the shim's headers before the first write: a shim that refuses the caller
        ends the stream with them, and a write racing that end would fail with gRPC internals
        in place of the reason (seen in CI)."""
        try:
            await self.call.initial_metadata()
        except grpc.aio.AioRpcError as e:
            self.broken = True
            raise await self._why_unavailable(e) from e
        if self.call.done():
            self.broken = True
            raise await self._why_unavailable(ShimUnavailable("the stream ended at once"))
        self.opened = True

    async def _why_unavailable(self, error: Exception) -> ShimUnavailable:
        """A write fails with gRPC internals when the shim has just ended the stream; its
        status says why (a refused caller token must read as such, not as a crash)."""
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(self.call.code(), 1.0) == grpc.StatusCode.UNAUTHENTICATED:
                return ShimUnavailable("the function environment refused the gateway")
        return ShimUnavailable(f"function environment unavailable: {error}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call.done_writing()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class ShimClient:
    def __init__(self, key: bytes | None = None) -> None:
        """``key``: the platform key the callers' tokens derive from (None: shims without
        caller tokens, started by hand in tests)."""
        self.key = key
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._stubs: dict[str, shim_pb2_grpc.ShimStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, _Stream] = {}
        self.inflight: dict[str, int] = {}

    def _stub(self, address: str) -> shim_pb2_grpc.ShimStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
            self._channels[address] = channel
            stub = self._stubs[address] = shim_pb2_grpc.ShimStub(channel)
        return stub

    def token(self, version: tuple[str, str, str]) -> str | None:
        """The caller token of a (namespace, function, version)."""
        if self.key is None:
            return None
        token = self._tokens.get(version)
        if token is None:
            if len(self._tokens) > 100_000:  # bounded: versions come and go
                self._tokens.clear()
            token = self._tokens[version] = caller_token(self.key, *version)
        return token

    def _stream(self, address: str, token: str | None) -> _Stream:
        stream = self._streams.get(address)
        if stream is not None and stream.token != token:  # the address now serves another
            closing = asyncio.get_running_loop().create_task(stream.close())  # version
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            stream = None
        if stream is None or stream.broken:
            stream = self._streams[address] = _Stream(self._stub(address), token)
        return stream

    def pick(self, endpoints: tuple[str, ...]) -> str:
        """The endpoint with the fewest invocations in flight from this gateway."""
        return min(endpoints, key=lambda a: self.inflight.get(a, 0))

    async def invoke(
        self,
        address: str,
        request: shim_pb2.InvokeRequest,
        timeout: float,
        version: tuple[str, str, str],
    ) -> shim_pb2.InvokeResponse:
        """Invokes ``version`` (namespace, function, version) at ``address``."""
        self.inflight[address] = self.inflight.get(address, 0) + 1
        try:
            request.timeout_ms = int(timeout * 1000)
            answer = await self._stream(address, self.token(version)).invoke(request, timeout)
        finally:
            self.inflight[address] -= 1
        if answer.refused == "RESOURCE_EXHAUSTED":
            raise TooManyRequests("ConcurrentInvocationLimitExceeded")
        if answer.refused == "UNAVAILABLE":  # draining: the invocation did not start
            raise ShimUnavailable(f"function environment unavailable: {answer.refused_message}")
        if answer.refused:
            raise ServiceError(f"invocation refused: {answer.refused}: {answer.refused_message}")
        return answer

    async def prune(self, live: set[str]) -> None:
        """Closes idle streams to shims no route names any more (they may be draining)."""
        for address in list(self._channels):
            if address not in live and not self.inflight.get(address):
                await self.forget(address)

    async def forget(self, address: str) -> None:
        """Closes the stream and channel to a shim that is gone."""
        stream = self._streams.pop(address, None)
        if stream is not None:
            await stream.close()
        self._stubs.pop(address, None)
        self.inflight.pop(address, None)
        channel = self._channels.pop(address, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        for address in list(self._channels):
            await self.forget(address)
