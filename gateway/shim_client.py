"""The gateway's side of the data path to shims (``klambda.protos.frames``): one TCP
connection per shim address, many invocations on it at once, answers matched by request id.

A message on an open connection costs a fraction of a gRPC stream's (``bench/bench_shim_hop.py``).
A request that could not be written was never seen by the shim (safe to send elsewhere); once
written, a broken connection means the invocation may have run, so it is reported as a service
error, never retried.

Every connection opens with the caller token of the version it calls (``api.shim_auth``),
derived from the platform key this gateway holds; a shim answers nothing else. A connection
that stays silent through a keepalive ping is given up on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import cast

from klambda.api.shim_auth import caller_token
from klambda.gateway.errors import ServiceError, TooManyRequests
from klambda.protos import frames, shim_pb2

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 5.0
"""Seconds to connect to a shim and be welcomed."""


class ShimUnavailable(ServiceError):
    """The shim could not be reached; the invocation did not start there."""


class ShimBusy(TooManyRequests):
    """Every environment of that shim is busy (with another gateway's calls, which this one
    does not count); the invocation did not start there, so another pod may take it."""

    def __init__(self) -> None:
        super().__init__("ConcurrentInvocationLimitExceeded")


class _Connection(asyncio.Protocol):
    """One data-path connection: the answers awaited, a keepalive, and why it ended."""

    def __init__(self, address: str, token: str | None) -> None:
        self.address = address
        self.token = token
        self.pending: dict[str, asyncio.Future[shim_pb2.InvokeResponse]] = {}
        self.broken = False
        self.transport: asyncio.Transport | None = None
        self.reader = frames.FrameReader()
        self._welcome: asyncio.Future[shim_pb2.StreamWelcome] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._heard = True
        """Something arrived since the last ping."""
        self._keepalive: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ opening

    async def open(self) -> None:
        """Connects and presents the token, once; later callers wait for the same opening."""
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        host, _, port = self.address.rpartition(":")
        self._welcome = loop.create_future()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self, host.strip("[]"), int(port)), OPEN_TIMEOUT
            )
            assert self.transport is not None
            hello = shim_pb2.StreamHello(token=self.token or "").SerializeToString()
            self.transport.write(frames.frame(frames.HELLO, hello))
            welcome = await asyncio.wait_for(asyncio.shield(self._welcome), OPEN_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            self._break()
            raise ShimUnavailable(f"function environment unavailable: {e}") from None
        if not welcome.accepted:
            log.error("a shim refused this gateway's caller token (platform key differs?)")
            self._break()
            raise ShimUnavailable("the function environment refused the gateway")
        self._keepalive = loop.call_later(frames.KEEPALIVE_SECONDS, self._ping)

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._heard = True
        try:
            received = self.reader.feed(data)
            for kind, body in received:
                if kind == frames.ANSWER:
                    answer = shim_pb2.InvokeResponse.FromString(body)
                    future = self.pending.pop(answer.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(answer)
                elif kind == frames.WELCOME and self._welcome and not self._welcome.done():
                    self._welcome.set_result(shim_pb2.StreamWelcome.FromString(body))
        except (frames.FrameError, ValueError) as e:
            log.warning("shim %s sent what is not a frame: %s", self.address, e)
            self._break()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.broken:
            log.info("shim connection to %s closed", self.address)
        self._break()

    def _ping(self) -> None:
        """Every KEEPALIVE_SECONDS: a connection that heard nothing since the last ping (its
        PONG included) is given up on; otherwise ping again."""
        if self.broken or self.transport is None:
            return
        if not self._heard:
            log.warning("shim %s did not answer a keepalive ping: giving up on it", self.address)
            self._break()
            return
        self._heard = False
        self.transport.write(frames.frame(frames.PING))
        self._keepalive = asyncio.get_running_loop().call_later(
            frames.KEEPALIVE_SECONDS, self._ping
        )

    def _break(self) -> None:
        self.broken = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.transport is not None:
            self.transport.abort()
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(ConnectionError("the shim closed the connection"))
            self._welcome.exception()  # retrieved: _open reports it
        error = ServiceError("the function environment went away during the invocation")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    # ------------------------------------------------------------------ invoking

    async def invoke(
        self, request: shim_pb2.InvokeRequest, timeout: float
    ) -> shim_pb2.InvokeResponse:
        if self.transport is None or not self._welcome or not self._welcome.done():
            await self.open()
        if self.broken or self.transport is None or self.transport.is_closing():
            raise ShimUnavailable("function environment unavailable: its connection closed")
        future = asyncio.get_running_loop().create_future()
        self.pending[request.request_id] = future
        self.transport.write(frames.frame(frames.INVOKE, request.SerializeToString()))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ServiceError("the invocation did not finish within its deadline") from None
        finally:  # an answer arriving later (or never) has nobody waiting for it
            self.pending.pop(request.request_id, None)

    def close(self) -> None:
        self.broken = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.transport is not None:
            self.transport.close()


class ShimClient:
    def __init__(self, key: bytes | None = None) -> None:
        """``key``: the platform key the callers' tokens derive from (None: shims without
        caller tokens, started by hand in tests)."""
        self.key = key
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._connections: dict[str, _Connection] = {}
        self.inflight: dict[str, int] = {}

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

    def _connection(self, address: str, token: str | None) -> _Connection:
        connection = self._connections.get(address)
        if connection is not None and connection.token != token:  # the address now serves
            connection.close()  # another version
            connection = None
        if connection is None or connection.broken:
            connection = self._connections[address] = _Connection(address, token)
        return connection

    def pick(self, endpoints: tuple[str, ...]) -> str:
        """An endpoint with the fewest invocations in flight from this gateway, at random
        among equals: other replicas do not count here, and had every one taken the first,
        their calls would meet on one pod while others sat idle."""
        least = min(self.inflight.get(a, 0) for a in endpoints)
        return random.choice([a for a in endpoints if self.inflight.get(a, 0) == least])

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
            connection = self._connection(address, self.token(version))
            answer = await connection.invoke(request, timeout)
        finally:
            self.inflight[address] -= 1
        if answer.refused == "RESOURCE_EXHAUSTED":
            raise ShimBusy()
        if answer.refused == "UNAVAILABLE":  # draining: the invocation did not start
            raise ShimUnavailable(f"function environment unavailable: {answer.refused_message}")
        if answer.refused:
            raise ServiceError(f"invocation refused: {answer.refused}: {answer.refused_message}")
        return answer

    async def prune(self, live: set[str]) -> None:
        """Closes idle connections to shims no route names any more (they may be draining)."""
        for address in list(self._connections):
            if address not in live and not self.inflight.get(address):
                await self.forget(address)

    async def forget(self, address: str) -> None:
        """Closes the connection to a shim that is gone."""
        connection = self._connections.pop(address, None)
        if connection is not None:
            connection.close()
        self.inflight.pop(address, None)

    async def close(self) -> None:
        for address in list(self._connections):
            await self.forget(address)
