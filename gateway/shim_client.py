"""gRPC client side of the shim contract: one channel per shim address, reused."""

from __future__ import annotations

import grpc

from klambda.gateway.errors import ServiceError, TooManyRequests
from klambda.protos import shim_pb2, shim_pb2_grpc

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
]


class ShimUnavailable(ServiceError):
    """The shim could not be reached; the invocation did not start there."""


class ShimClient:
    def __init__(self) -> None:
        self._stubs: dict[str, shim_pb2_grpc.ShimStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.inflight: dict[str, int] = {}

    def _stub(self, address: str) -> shim_pb2_grpc.ShimStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
            stub = self._stubs[address] = shim_pb2_grpc.ShimStub(channel)
        return stub

    def pick(self, endpoints: tuple[str, ...]) -> str:
        """The endpoint with the fewest invocations in flight from this gateway."""
        return min(endpoints, key=lambda a: self.inflight.get(a, 0))

    async def invoke(
        self, address: str, request: shim_pb2.InvokeRequest, timeout: float
    ) -> shim_pb2.InvokeResponse:
        self.inflight[address] = self.inflight.get(address, 0) + 1
        try:
            return await self._stub(address).Invoke(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise TooManyRequests("ConcurrentInvocationLimitExceeded") from e
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ShimUnavailable(f"function environment unavailable: {e.details()}") from e
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServiceError("the invocation did not finish within its deadline") from e
            raise ServiceError(f"invocation failed: {code.name}: {e.details()}") from e
        finally:
            self.inflight[address] -= 1

    async def forget(self, address: str) -> None:
        """Closes the channel to a shim that is gone."""
        self._stubs.pop(address, None)
        self.inflight.pop(address, None)
        channel = self._channels.pop(address, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        for address in list(self._channels):
            await self.forget(address)
