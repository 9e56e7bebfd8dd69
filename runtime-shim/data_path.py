"""The shim's side of the data path (``klambda.protos.frames``): framed InvokeRequests in,
InvokeResponses out, on one TCP port beside the gRPC one.

A connection must open with the version's caller token (constant-time check); until then
nothing else is read. Each invocation is started as it arrives and answered when it ends (a
done-callback writes its frame), so a connection carries as many at once as the pool allows.
On drain the port stops accepting and each connection ends once its invocations are answered,
so gateways reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from klambda.api.shim_auth import matches
from klambda.protos import frames, shim_pb2
from klambda.shim.service import ShimService

log = logging.getLogger(__name__)


class DataPath:
    def __init__(self, service: ShimService, token: str | None) -> None:
        """``token``: the caller token a connection must present (None: any caller, for
        shims started by hand in tests)."""
        self.service = service
        self.token = token
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> int:
        """Listens; returns the port (a free one when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=False
        )
        return int(self._server.sockets[0].getsockname()[1])

    def drain(self) -> None:
        """Takes no new connection; the open ones end as they go idle (``service.drain``)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.drain()
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    __slots__ = ("_unregister", "path", "reader", "running", "transport", "welcomed")

    def __init__(self, path: DataPath) -> None:
        self.path = path
        self.reader = frames.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.welcomed = False
        self.running = 0
        self._unregister: Callable[[], None] = lambda: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.path._connections.add(self)
        self._unregister = self.path.service.on_drain(self._end_if_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        # invocations still running finish (the shim owns them); their answers are dropped
        self.transport = None
        self.path._connections.discard(self)
        self._unregister()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            for kind, body in self.reader.feed(data):
                self._frame(kind, body)
        except (frames.FrameError, ValueError) as e:  # ValueError: a message protobuf refused
            log.warning("closing a data-path connection: %s", e)
            self.close()

    def _frame(self, kind: int, body: bytes) -> None:
        if kind == frames.INVOKE and self.welcomed:
            request = shim_pb2.InvokeRequest.FromString(body)
            self.running += 1
            self.path.service.submit(request, self._respond)
        elif kind == frames.PING:
            self._write(frames.frame(frames.PONG))
        elif kind == frames.HELLO and not self.welcomed:
            self._hello(shim_pb2.StreamHello.FromString(body))
        else:
            raise frames.FrameError(f"frame kind {kind} out of turn")

    def _hello(self, hello: shim_pb2.StreamHello) -> None:
        token = self.path.token
        if token is not None and not matches(token, hello.token):
            welcome = shim_pb2.StreamWelcome(message="caller token missing or wrong")
            self._write(frames.frame(frames.WELCOME, welcome.SerializeToString()))
            self.close()
            return
        self.welcomed = True
        accepted = shim_pb2.StreamWelcome(accepted=True).SerializeToString()
        self._write(frames.frame(frames.WELCOME, accepted))
        self._end_if_idle()

    def _respond(self, answer: shim_pb2.InvokeResponse) -> None:
        self.running -= 1
        self._write(frames.frame(frames.ANSWER, answer.SerializeToString()))
        self._end_if_idle()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _end_if_idle(self) -> None:
        """While draining, a connection with nothing running ends (after its last answer)."""
        if self.path.service.draining and not self.running and self.transport is not None:
            self.transport.close()
