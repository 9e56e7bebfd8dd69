"""Lambda's Runtime API (2018-06-01), served to each environment on its own loopback port.

``AWS_LAMBDA_RUNTIME_API`` is a bare ``host:port``, so environments are told apart by the port
they connect to: one listening socket per environment. Its four endpoints are served by a small
asyncio protocol (``runtime_http``, llhttp through httptools) rather than a web framework: they
are on every invocation's path twice (``/next`` and the response), and a framework's request and
response objects cost more than the rest of the shim's work together (py-spy, docs/benchmarks.md).
The pod's health endpoints (``/healthz``, ``/ready``) stay on aiohttp, on a port of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable

from aiohttp import web

from klambda.shim.environment import ConcurrentNext, Environment, Invocation
from klambda.shim.runtime_http import Request, RuntimeConnection, response

PREFIX = "/2018-06-01/runtime"
NEXT = f"{PREFIX}/invocation/next"
INVOCATION = f"{PREFIX}/invocation/"
INIT_ERROR = f"{PREFIX}/init/error"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # RIE's limit: 6 MiB + 100 bytes
ERROR_TYPE_HEADER = "lambda-runtime-function-error-type"
_ERROR_TYPE = re.compile(r"^(Runtime|Function)\.[A-Z][a-zA-Z]+$")
_ACCEPTED = response(202, b'{"status": "OK"}')


def _error(status: int, error_type: str, message: str) -> bytes:
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return response(status, body)


class RuntimeApi:
    """The Runtime API server; ``attach`` gives an environment its own address."""

    def __init__(self, host: str = "127.0.0.1", uid: int | None = None) -> None:
        """``uid``: the only user whose connections are answered (None: anyone's)."""
        self.host = host
        self.uid = uid
        self._servers: dict[int, tuple[Environment, asyncio.Server]] = {}
        self._abandoned = False
        self.not_ready: Callable[[], str | None] = lambda: None
        """Why the shim takes no traffic now (None: it does); ``/ready`` answers with it."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/ready", self._ready)
        self._health = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, health_host: str = "127.0.0.1", health_port: int = 0) -> None:
        await self._health.setup()
        if health_port:  # on the pod's address: the kubelet probes it (external runtimes)
            site = web.TCPSite(self._health, health_host, health_port, reuse_address=True)
            await site.start()

    def abandon(self) -> None:
        """The shim gave up on an external runtime: the next /healthz fails (once)."""
        self._abandoned = True

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._abandoned:
            self._abandoned = False
            return web.json_response(
                {"errorType": "Runtime.Abandoned", "errorMessage": "the runtime must be restarted"},
                status=503,
            )
        return web.json_response({"status": "OK"})

    async def _ready(self, request: web.Request) -> web.Response:
        """The pod's readiness probe: 503 while the shim cannot take invocations (starting,
        draining, or unable to start an environment), so its endpoint leaves the Service."""
        reason = self.not_ready()
        if reason is not None:
            return web.json_response(
                {"errorType": "Runtime.NotReady", "errorMessage": reason}, status=503
            )
        return web.json_response({"status": "OK"})

    async def close(self) -> None:
        for _, server in list(self._servers.values()):
            server.close()
        self._servers.clear()
        await self._health.cleanup()

    async def attach(self, env: Environment, port: int = 0) -> str:
        """Opens a port for ``env`` (``port``, or a free one); returns the ``host:port`` for
        AWS_LAMBDA_RUNTIME_API."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        port = sock.getsockname()[1]
        handler = _Handler(env)
        server = await asyncio.get_running_loop().create_server(
            lambda: RuntimeConnection(handler.handle, self.uid, MAX_RESPONSE_BYTES), sock=sock
        )
        self._servers[port] = (env, server)
        return f"{self.host}:{port}"

    async def detach(self, env: Environment) -> None:
        for port, (e, server) in list(self._servers.items()):
            if e is env:
                del self._servers[port]
                server.close()  # its connections go with the runtime's process


class _Handler:
    """The Runtime API of one environment: each request's answer (bytes of a whole HTTP
    response), or a future of it for ``/next``."""

    __slots__ = ("env",)

    def __init__(self, env: Environment) -> None:
        self.env = env

    def handle(self, request: Request) -> bytes | asyncio.Future[bytes]:
        path = request.path
        if request.too_large:
            return self._too_large()
        if path == NEXT and request.method == "GET":
            return self._next()
        if path.startswith(INVOCATION) and request.method == "POST":
            request_id, _, action = path[len(INVOCATION) :].partition("/")
            if action not in ("response", "error"):
                return _error(404, "Runtime.Unknown", f"no such endpoint: {path}")
            bad = self._check(request_id)
            if bad is not None:
                return bad
            if action == "response":
                self.env.on_result(request.body, None)
            else:
                self.env.on_result(request.body or b"{}", _error_type(request))
            return _ACCEPTED
        if path == INIT_ERROR and request.method == "POST":
            self.env.on_init_error(request.body or b"{}", _error_type(request))
            return _ACCEPTED
        return _error(404, "Runtime.Unknown", f"no such endpoint: {request.method} {path}")

    def _next(self) -> bytes | asyncio.Future[bytes]:
        try:
            waiter = self.env.request_next()
        except ConcurrentNext as e:
            return _error(409, "Runtime.ConcurrentNext", str(e))
        if waiter.done():
            return _next_answer(waiter)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def delivered(done: asyncio.Future[Invocation]) -> None:
            if not answer.done():
                answer.set_result(_next_answer(waiter))

        def abandoned(done: asyncio.Future[bytes]) -> None:
            if done.cancelled():  # the runtime's connection closed while it waited
                waiter.cancel()

        waiter.add_done_callback(delivered)
        answer.add_done_callback(abandoned)
        return answer

    def _check(self, request_id: str) -> bytes | None:
        current = self.env.current_request_id()
        if current is None:
            return _error(403, "InvalidStateTransition", "no invocation is in progress")
        if request_id != current:
            return _error(400, "InvalidRequestID", "Invalid request ID")
        return None

    def _too_large(self) -> bytes:
        message = (
            "Response payload size exceeded maximum allowed payload size "
            f"({MAX_RESPONSE_BYTES} bytes)."
        )
        if self.env.current_request_id() is not None:
            self.env.on_result(
                json.dumps(
                    {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
                ).encode(),
                "Function.ResponseSizeTooLarge",
                reset=True,
            )
        return _error(413, "RequestEntityTooLarge", message)


def _next_answer(waiter: asyncio.Future[Invocation]) -> bytes:
    if waiter.cancelled() or waiter.exception() is not None:  # the environment ended
        return _error(500, "Runtime.ExitError", "the environment is shutting down")
    inv = waiter.result()
    return response(200, inv.payload, inv.headers())


def _error_type(request: Request) -> str:
    """The error type: awslambdaric puts it in the body; other runtimes may use the header."""
    header = request.headers.get(ERROR_TYPE_HEADER, "")
    try:
        declared = json.loads(request.body).get("errorType") if request.body else None
    except (ValueError, AttributeError):
        declared = None
    if isinstance(declared, str) and declared:
        return declared
    return header if _ERROR_TYPE.match(header) else "Runtime.Unknown"
