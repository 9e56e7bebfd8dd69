"""Lambda's Runtime API (2018-06-01), served to each environment on its own loopback port.

``AWS_LAMBDA_RUNTIME_API`` is a bare ``host:port``, so environments are told apart by the port
they connect to: one listening socket per environment, all served by one aiohttp runner.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable

from aiohttp import web

from klambda.shim.environment import ConcurrentNext, Environment
from klambda.shim.identity import peer_uid

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # RIE's limit: 6 MiB + 100 bytes
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
_ERROR_TYPE = re.compile(r"^(Runtime|Function)\.[A-Z][a-zA-Z]+$")


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"errorType": error_type, "errorMessage": message}, status=status)


def _accepted() -> web.Response:
    return web.json_response({"status": "OK"}, status=202)


class RuntimeApi:
    """The Runtime API server; ``attach`` gives an environment its own address."""

    def __init__(self, host: str = "127.0.0.1", uid: int | None = None) -> None:
        """``uid``: the only user whose connections are answered (None: anyone's)."""
        self.host = host
        self.uid = uid
        self._trusted: set[asyncio.Transport] = set()
        """Connections found to be the runtimes' user's (held, so none is mistaken for a later
        one; closed ones are dropped as more come)."""
        self._by_port: dict[int, Environment] = {}
        self._sites: dict[int, web.SockSite] = {}
        app = web.Application(client_max_size=MAX_RESPONSE_BYTES + 1024)
        app.router.add_get(f"{PREFIX}/invocation/next", self._next)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/response", self._response)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/error", self._invocation_error)
        app.router.add_post(f"{PREFIX}/init/error", self._init_error)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._abandoned = False
        self.not_ready: Callable[[], str | None] = lambda: None
        """Why the shim takes no traffic now (None: it does); ``/ready`` answers with it."""

    async def start(self, health_host: str = "127.0.0.1", health_port: int = 0) -> None:
        await self._runner.setup()
        if health_port:  # on the pod's address: the kubelet probes it (external runtimes)
            site = web.TCPSite(self._runner, health_host, health_port, reuse_address=True)
            await site.start()

    def abandon(self) -> None:
        """The shim gave up on an external runtime: the next /healthz fails (once)."""
        self._abandoned = True

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._abandoned:
            self._abandoned = False
            return _error(503, "Runtime.Abandoned", "the runtime must be restarted")
        return web.json_response({"status": "OK"})

    async def _ready(self, request: web.Request) -> web.Response:
        """The pod's readiness probe: 503 while the shim cannot take invocations (starting,
        draining, or unable to start an environment), so its endpoint leaves the Service."""
        reason = self.not_ready()
        if reason is not None:
            return _error(503, "Runtime.NotReady", reason)
        return web.json_response({"status": "OK"})

    async def close(self) -> None:
        await self._runner.cleanup()

    async def attach(self, env: Environment, port: int = 0) -> str:
        """Opens a port for ``env`` (``port``, or a free one); returns the ``host:port`` for
        AWS_LAMBDA_RUNTIME_API."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._by_port[port] = env
        self._sites[port] = site
        return f"{self.host}:{port}"

    async def detach(self, env: Environment) -> None:
        for port, e in list(self._by_port.items()):
            if e is env:
                del self._by_port[port]
                await self._sites.pop(port).stop()

    def _env(self, request: web.Request) -> Environment | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if self.uid is not None and request.transport not in self._trusted:
            self._check_user(request, sockname)
        return self._by_port.get(sockname[1]) if sockname else None

    def _check_user(self, request: web.Request, sockname: tuple[str, int] | None) -> None:
        """Refuses a connection not made by the runtimes' user (another function's code, or
        any other process on the machine); checked once per connection."""
        peername = request.transport.get_extra_info("peername") if request.transport else None
        if sockname and peername and peer_uid(sockname, peername) == self.uid:
            if len(self._trusted) >= 64:
                self._trusted = {t for t in self._trusted if not t.is_closing()}
            self._trusted.add(request.transport)  # type: ignore[arg-type]
            return
        raise web.HTTPForbidden(
            text=json.dumps(
                {
                    "errorType": "Runtime.Forbidden",
                    "errorMessage": "this Runtime API answers only its function's runtime",
                }
            ),
            content_type="application/json",
        )

    async def _next(self, request: web.Request) -> web.StreamResponse:
        env = self._env(request)
        if env is None:
            return _error(500, "Runtime.Unknown", "no environment is attached to this address")
        try:
            inv = await env.on_next()
        except ConcurrentNext as e:
            return _error(409, "Runtime.ConcurrentNext", str(e))
        except Exception:  # the environment ended while the runtime waited
            return _error(500, "Runtime.ExitError", "the environment is shutting down")
        return web.Response(body=inv.payload, headers=inv.headers())

    async def _response(self, request: web.Request) -> web.StreamResponse:
        env, bad = self._check_request(request)
        if bad is not None:
            return bad
        assert env is not None
        if request.content_length is not None and request.content_length > MAX_RESPONSE_BYTES:
            return self._too_large(env)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(env)
        env.on_result(body, None)
        return _accepted()

    def _too_large(self, env: Environment) -> web.Response:
        message = (
            "Response payload size exceeded maximum allowed payload size "
            f"({MAX_RESPONSE_BYTES} bytes)."
        )
        env.on_result(
            json.dumps(
                {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
            ).encode(),
            "Function.ResponseSizeTooLarge",
        )
        return _error(413, "RequestEntityTooLarge", message)

    async def _invocation_error(self, request: web.Request) -> web.StreamResponse:
        env, bad = self._check_request(request)
        if bad is not None:
            return bad
        assert env is not None
        body = await request.read()
        env.on_result(body or b"{}", _error_type(request, body))
        return _accepted()

    async def _init_error(self, request: web.Request) -> web.StreamResponse:
        env = self._env(request)
        if env is None:
            return _error(500, "Runtime.Unknown", "no environment is attached to this address")
        body = await request.read()
        env.on_init_error(body or b"{}", _error_type(request, body))
        return _accepted()

    def _check_request(
        self, request: web.Request
    ) -> tuple[Environment | None, web.Response | None]:
        env = self._env(request)
        if env is None:
            return None, _error(
                500, "Runtime.Unknown", "no environment is attached to this address"
            )
        current = env.current_request_id()
        if current is None:
            return None, _error(403, "InvalidStateTransition", "no invocation is in progress")
        if request.match_info["request_id"] != current:
            return None, _error(400, "InvalidRequestID", "Invalid request ID")
        return env, None


def _error_type(request: web.Request, body: bytes) -> str:
    """The error type: awslambdaric puts it in the body; other runtimes may use the header."""
    header = request.headers.get(ERROR_TYPE_HEADER, "")
    try:
        declared = json.loads(body).get("errorType") if body else None
    except (ValueError, AttributeError):
        declared = None
    if isinstance(declared, str) and declared:
        return declared
    return header if _ERROR_TYPE.match(header) else "Runtime.Unknown"
