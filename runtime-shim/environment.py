"""One execution environment: the Runtime API state machine of a runtime serving one
invocation at a time.

Lifecycle (Lambda's): spawn -> init (until the runtime's first ``/next``) -> invoke, invoke, ...
A timeout, a crash or an init failure ends the environment; the pool then starts a fresh one.
The Runtime API server (``runtime_api``) calls the ``on_*`` methods; ``invoke`` is called by the
pool's user, one invocation at a time. The process itself (spawn, memory, kill) is supervised by
``process.RuntimeProcess``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from klambda.api.shim_config import ShimConfig
from klambda.api.tasks import cancel_and_wait
from klambda.shim import errors, logs
from klambda.shim.process import RuntimeProcess
from klambda.shim.runtimes import execution_env
from klambda.shim.zygote import ZygoteGone, ZygoteKeeper

log = logging.getLogger(__name__)

MEMORY_POLL_SECONDS = 0.05


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass
class Invocation:
    """One event for the runtime, as ``/next`` hands it out."""

    request_id: str
    payload: bytes
    invoked_function_arn: str
    deadline_ms: int
    trace_id: str = ""
    client_context: str = ""
    cognito_identity: str = ""
    tail_log: bool = False

    def headers(self) -> dict[str, str]:
        h = {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.invoked_function_arn,
            "Content-Type": "application/json",
        }
        if self.trace_id:
            h["Lambda-Runtime-Trace-Id"] = self.trace_id
        if self.client_context:
            h["Lambda-Runtime-Client-Context"] = self.client_context
        if self.cognito_identity:
            h["Lambda-Runtime-Cognito-Identity"] = self.cognito_identity
        return h


@dataclass
class Outcome:
    """How an invocation ended. ``error_type`` is None on success."""

    payload: bytes
    error_type: str | None = None
    duration_ms: float = 0.0
    init_duration_ms: float | None = None
    max_memory_used_mb: int = 0
    log_tail: bytes = b""


@dataclass
class _Reply:
    payload: bytes
    error_type: str | None


@dataclass(eq=False)
class Environment:
    """A runtime process plus the Runtime API state the shim keeps for it."""

    config: ShimConfig
    command: list[str]
    runtime_api: str
    init_type: str = "on-demand"
    provisioned: bool = False
    prewarmed: bool = False
    on_exit: Callable[[Environment], None] | None = None
    on_abandon: Callable[[], None] | None = None
    """External runtimes: called when the shim gives up on the runtime (it must restart)."""
    zygotes: ZygoteKeeper | None = None
    """Forks the runtime when it has a zygote (Python runtimes); else it is spawned."""
    state: State = State.STARTING
    stream: logs.LogStream | None = None
    runtime: RuntimeProcess = field(default_factory=RuntimeProcess)
    """The operating system's side: the process, its memory, its exit."""
    init_duration_ms: float | None = None
    init_error: _Reply | None = None
    last_used: float = field(default_factory=time.monotonic)
    _spawned_at: float = 0.0
    _ready: asyncio.Future[None] | None = None
    _waiter: asyncio.Future[Invocation] | None = None
    _pending: Invocation | None = None
    _delivered: bool = False
    _current: Invocation | None = None
    _reply: asyncio.Future[_Reply] | None = None
    _exited: asyncio.Task[int] | None = None
    _follower: asyncio.Task[None] | None = None
    _reset: bool = False

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.stream = logs.LogStream.open(self.config.log_dir, self.config.version)
        if self.config.log_to_stdout:
            self._follower = asyncio.create_task(
                logs.follow(self.stream, 1, lambda: self.state is State.IDLE), name="log-follower"
            )
        self._spawned_at = time.monotonic()
        if self.config.external_runtime:
            # The runtime runs beside the shim (an image's container); init ends at its first
            # /next, and it "exits" when the shim gives up on it (kill).
            self.runtime.external()
        else:
            await self._spawn()
        assert self.runtime.exited is not None
        self._exited = asyncio.create_task(self._watch_exit(self.runtime.exited))

    async def _spawn(self) -> None:
        assert self.stream is not None
        c, env = self.config, self._environ()
        zygote = self.zygotes.current() if self.zygotes is not None else None
        if zygote is not None:
            try:
                await self.runtime.fork(
                    zygote, self.command[2:], c.code_dir, env, self.stream.fd, c.memory_size
                )
                return
            except ZygoteGone as e:
                log.warning("forking an environment failed (%s): spawning it", e)
        uid = c.runtime_uid if c.runtime_uid >= 0 else None
        await self.runtime.spawn(self.command, c.code_dir, env, self.stream.fd, c.memory_size, uid)

    async def _watch_exit(self, ended: Awaitable[int]) -> int:
        code = await ended
        self.state = State.DEAD
        if self.on_exit is not None:
            self.on_exit(self)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        return code

    async def wait_ready(self) -> _Reply | None:
        """Waits for init to finish; returns the failure to report, or None when ready."""
        assert self._ready is not None and self._exited is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.config.init_timeout)
        except TimeoutError:
            await self.stop()
            return _Reply(
                errors.payload(
                    "Sandbox.Timedout",
                    f"Init phase timed out after {self.config.init_timeout:.2f} seconds",
                ),
                "Sandbox.Timedout",
            )
        if self.state is State.DEAD or self.init_error is not None:
            await self.stop()
            if self.init_error is not None:
                return self.init_error
            return _Reply(errors.exit_error("", self._returncode()), "Runtime.ExitError")
        return None

    async def kill(self) -> None:
        """Kills the runtime (SIGKILL: Lambda discards, it does not ask) and waits for it."""
        if self.runtime.abandon() and self.on_abandon is not None:
            self.on_abandon()  # an external runtime may still run what we gave up on: restart it
        self.state = State.DEAD
        self.runtime.kill()
        if self._exited is not None:
            await self._exited
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()

    async def stop(self) -> None:
        """Kills the runtime and closes its log stream; the environment is gone."""
        await self.kill()
        if self._follower is not None:  # it copies what is left, then stops
            await cancel_and_wait([self._follower])
        if self.stream is not None:
            self.stream.close()
        self.runtime.close()

    @property
    def pid(self) -> int | None:
        return self.runtime.pid

    def _returncode(self) -> int | None:
        return self.runtime.returncode

    # ----------------------------------------------------------------- invocation

    async def invoke(self, inv: Invocation, timeout: float) -> Outcome:
        """Runs one invocation; the environment is DEAD afterwards if it failed fatally."""
        assert self.stream is not None and self._exited is not None
        self.state = State.BUSY
        self._current = inv
        self._reply = asyncio.get_running_loop().create_future()
        log_start = self.stream.offset()
        self.stream.write(logs.start_line(inv.request_id, self.config.version))
        started = time.monotonic()
        self._deliver(inv)
        ends: set[asyncio.Future[Any]] = {self._reply, self._exited}
        done, _ = await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        duration_ms = (time.monotonic() - started) * 1000
        reply = await self._conclude(inv, done, timeout)
        if reply.error_type == "Sandbox.Timedout":
            duration_ms = timeout * 1000
        self._current = None
        memory = self.runtime.max_memory_used_mb(alive=False)  # read by _conclude
        cold_ms = self.init_duration_ms if self.init_type == "on-demand" else None
        self.stream.write(
            logs.end_line(inv.request_id)
            + logs.report_line(
                inv.request_id, duration_ms, self.config.memory_size, memory, cold_ms
            )
        )
        outcome = Outcome(
            reply.payload,
            reply.error_type,
            duration_ms,
            self.init_duration_ms,
            memory,
            self.stream.tail(log_start) if inv.tail_log else b"",
        )
        self.init_duration_ms = None  # only the first invocation of an environment is cold
        if self.state is not State.DEAD:
            self.state = State.IDLE
        self.last_used = time.monotonic()
        return outcome

    async def _conclude(
        self, inv: Invocation, done: set[asyncio.Future[Any]], timeout: float
    ) -> _Reply:
        """How the invocation ended: the runtime's reply, or the platform's verdict."""
        assert self.stream is not None and self._reply is not None
        over_limit = self.runtime.oom or self.max_memory_used_mb() > self.config.memory_size
        if over_limit:
            await self.kill()
            reply = _Reply(errors.out_of_memory(inv.request_id), "Runtime.OutOfMemory")
        elif self._reply in done:
            if self._reset:  # the runtime cannot go on (it exits): a fresh one takes the next
                self._reset = False
                await self.kill()
            return self._reply.result()
        elif self._exited in done:
            reply = _Reply(
                errors.exit_error(inv.request_id, self._returncode()), "Runtime.ExitError"
            )
        else:
            self.max_memory_used_mb()
            self.stream.write(errors.timeout_message(inv.request_id, timeout) + "\n")
            await self.kill()
            return _Reply(errors.timed_out(inv.request_id, timeout), "Sandbox.Timedout")
        self.stream.write(f"RequestId: {inv.request_id} Error: {_reason(reply)}\n")
        self.stream.write(f"{reply.error_type}\n")
        return reply

    def enforce_memory(self) -> None:
        """Kills the runtime once its peak memory passes memorySize, as Lambda's cgroup does.

        The pool calls this for busy environments every MEMORY_POLL_SECONDS.
        """
        self.runtime.enforce_memory(self.config.memory_size)

    def _deliver(self, inv: Invocation) -> None:
        """Hands the event to the runtime's pending ``/next``, or keeps it for the next one.

        After posting a response the runtime needs a moment to ask for more, and the pool may
        hand the environment a new invocation in between: that one waits in ``_pending``.
        """
        if self._waiter is not None and not self._waiter.done():
            self._delivered = True
            self._waiter.set_result(inv)
        else:
            self._delivered = False
            self._pending = inv

    def max_memory_used_mb(self) -> int:
        """Peak resident memory of the runtime, in MB (the last reading once it is gone)."""
        return self.runtime.max_memory_used_mb(alive=self.state is not State.DEAD)

    # ----------------------------------------------------------------- Runtime API side

    def request_next(self) -> asyncio.Future[Invocation]:
        """The runtime asks for work: a future of the invocation it gets (done already when
        one waits). The first call marks the end of init.

        One ``/next`` waits at a time: another while it waits is refused (ConcurrentNext), never
        handed the event instead, so a process that found this environment's address cannot
        take its events or answer in its place. Cancel the future when the runtime stops
        waiting (its connection closed)."""
        if self._waiter is not None and not self._waiter.done():
            raise ConcurrentNext("a /next request is already waiting for this environment")
        if self._ready is not None and not self._ready.done():
            self.init_duration_ms = (time.monotonic() - self._spawned_at) * 1000
            self.state = State.IDLE
            self._ready.set_result(None)
            self.max_memory_used_mb()
        reply = self._reply
        if self._current is not None and self._delivered and reply is not None and not reply.done():
            # Asked for more work without answering: Lambda reports the invocation as failed.
            reply.set_result(
                _Reply(
                    errors.payload("Runtime.NoResponse", "The runtime did not post a response"),
                    "Runtime.NoResponse",
                )
            )
        waiter: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        if self._pending is not None:
            inv, self._pending = self._pending, None
            self._delivered = True
            waiter.set_result(inv)
            return waiter
        self._waiter = waiter
        waiter.add_done_callback(self._next_done)
        return waiter

    def _next_done(self, waiter: asyncio.Future[Invocation]) -> None:
        if self._waiter is waiter:
            self._waiter = None

    def current_request_id(self) -> str | None:
        return self._current.request_id if self._current else None

    def on_result(self, payload: bytes, error_type: str | None, reset: bool = False) -> None:
        """The invocation's result. ``reset``: the runtime's post was refused, which ends an
        awslambdaric runtime, so the environment is replaced before its next invocation (as
        Lambda resets it) rather than handed one that meets a dying runtime."""
        if self._reply is not None and not self._reply.done():
            self._reset = reset
            self._reply.set_result(_Reply(payload, error_type))

    def on_init_error(self, payload: bytes, error_type: str) -> None:
        self.init_error = _Reply(payload, error_type or "Runtime.Unknown")

    # ----------------------------------------------------------------- environment variables

    def _environ(self) -> dict[str, str]:
        assert self.stream is not None
        return environ(
            self.config, self.command, self.runtime_api, self.stream.name, self.init_type
        )


def environ(
    c: ShimConfig, command: list[str], runtime_api: str, log_stream: str, init_type: str
) -> dict[str, str]:
    """The environment variables of a runtime of this shim (Lambda's, the function's)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",  # users may set TZ (Lambda does not reserve it)
        "PYTHONPATH": c.code_dir,
        "HOME": c.home_dir or "/tmp",  # never the user's: ~/.aws, ~/.kube are not theirs
    }
    env.update(c.environment)
    env.update({k: os.environ[k] for k in c.inherited_environment if k in os.environ})
    env.update(c.lambda_variables(runtime_api, log_stream, init_type))
    env.update(
        {
            "_HANDLER": c.handler,
            "LAMBDA_TASK_ROOT": c.code_dir,
            "LAMBDA_RUNTIME_DIR": os.path.dirname(command[0]),
            "AWS_EXECUTION_ENV": execution_env(c.runtime),
        }
    )
    return env


class ConcurrentNext(Exception):
    """A second ``/next`` while one waits."""


def _reason(reply: _Reply) -> str:
    try:
        return str(json.loads(reply.payload)["errorMessage"]).split("Error: ", 1)[-1]
    except (ValueError, KeyError, TypeError):
        return reply.error_type or "unknown"
