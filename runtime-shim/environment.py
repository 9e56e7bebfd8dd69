"""One execution environment: a runtime process that serves one invocation at a time.

Lifecycle (Lambda's): spawn -> init (until the runtime's first ``/next``) -> invoke, invoke, ...
A timeout, a crash or an init failure ends the environment; the pool then starts a fresh one.
The Runtime API server (``runtime_api``) calls the ``on_*`` methods; ``invoke`` is called by the
pool's user, one invocation at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from klambda.api.lifecycle import die_with_parent
from klambda.api.shim_config import ShimConfig
from klambda.api.tasks import cancel_and_wait
from klambda.shim import errors, logs
from klambda.shim.runtimes import execution_env

MEMORY_POLL_SECONDS = 0.05
# Headroom over memorySize for the interpreter's and libraries' own mappings: the limit
# bounds a runaway handler without making a 128 MB function unable to start.
ADDRESS_SPACE_OVERHEAD_MB = 1024


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
    state: State = State.STARTING
    stream: logs.LogStream | None = None
    process: asyncio.subprocess.Process | None = None
    init_duration_ms: float | None = None
    init_error: _Reply | None = None
    last_used: float = field(default_factory=time.monotonic)
    _spawned_at: float = 0.0
    _peak_mb: int = 0
    _status_fd: int = -1
    _oom: bool = False
    _ready: asyncio.Future[None] | None = None
    _waiter: asyncio.Future[Invocation] | None = None
    _pending: Invocation | None = None
    _delivered: bool = False
    _current: Invocation | None = None
    _reply: asyncio.Future[_Reply] | None = None
    _exited: asyncio.Task[int] | None = None
    _gone: asyncio.Event | None = None
    _follower: asyncio.Task[None] | None = None

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
            self._gone = asyncio.Event()
            self._exited = asyncio.create_task(self._watch_exit(self._gone_code()))
            return
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            cwd=self.config.code_dir,
            env=self._environ(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.stream.fd,
            stderr=self.stream.fd,
            # its own process group, so a kill takes whatever it started as well; and it
            # dies with the shim even if the shim is killed outright
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        _limit_memory(self.process.pid, self.config.memory_size)
        with contextlib.suppress(OSError):
            self._status_fd = os.open(f"/proc/{self.process.pid}/status", os.O_RDONLY)
        self._exited = asyncio.create_task(self._watch_exit(self.process.wait()))

    async def _gone_code(self) -> int:
        assert self._gone is not None
        await self._gone.wait()
        return -signal.SIGKILL

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
        if self._gone is not None and not self._gone.is_set():
            self._gone.set()
            if self.on_abandon is not None:  # it may still run what we gave up on: restart it
                self.on_abandon()
        self.state = State.DEAD
        if self.process is not None and self.process.returncode is None:
            _kill_group(self.process)
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
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _returncode(self) -> int | None:
        return self.process.returncode if self.process else None

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
        memory = self._peak_mb  # read by _conclude
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
        over_limit = self._oom or self.max_memory_used_mb() > self.config.memory_size
        if over_limit:
            await self.kill()
            reply = _Reply(errors.out_of_memory(inv.request_id), "Runtime.OutOfMemory")
        elif self._reply in done:
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
        if self.max_memory_used_mb() > self.config.memory_size and self.process is not None:
            self._oom = True
            _kill_group(self.process)

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
        """Peak resident memory of the runtime process (VmHWM), in MB rounded up.

        One pread of /proc/<pid>/status on an fd kept open: this runs on every invocation.
        Once the process is gone the last reading stands (a crash or a timeout kill).
        """
        if self._status_fd < 0 or self.state is State.DEAD:
            return self._peak_mb
        try:
            status = os.pread(self._status_fd, 4096, 0)
        except OSError:
            return self._peak_mb
        at = status.find(b"VmHWM:")
        if at >= 0:
            kb = int(status[at + 6 : status.index(b"kB", at)])
            self._peak_mb = max(self._peak_mb, -(-kb // 1024))
        return self._peak_mb

    # ----------------------------------------------------------------- Runtime API side

    async def on_next(self) -> Invocation:
        """The runtime asks for work. The first call marks the end of init."""
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
        if self._pending is not None:
            inv, self._pending = self._pending, None
            self._delivered = True
            return inv
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def current_request_id(self) -> str | None:
        return self._current.request_id if self._current else None

    def on_result(self, payload: bytes, error_type: str | None) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(_Reply(payload, error_type))

    def on_init_error(self, payload: bytes, error_type: str) -> None:
        self.init_error = _Reply(payload, error_type or "Runtime.Unknown")

    # ----------------------------------------------------------------- environment variables

    def _environ(self) -> dict[str, str]:
        c = self.config
        assert self.stream is not None
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",  # users may set TZ (Lambda does not reserve it)
            "PYTHONPATH": c.code_dir,
            "HOME": os.environ.get("HOME", "/tmp"),
        }
        env.update(c.environment)
        env.update({k: os.environ[k] for k in c.inherited_environment if k in os.environ})
        env.update(c.lambda_variables(self.runtime_api, self.stream.name, self.init_type))
        env.update(
            {
                "_HANDLER": c.handler,
                "LAMBDA_TASK_ROOT": c.code_dir,
                "LAMBDA_RUNTIME_DIR": os.path.dirname(self.command[0]),
                "AWS_EXECUTION_ENV": execution_env(c.runtime),
            }
        )
        return env


def _reason(reply: _Reply) -> str:
    try:
        return str(json.loads(reply.payload)["errorMessage"]).split("Error: ", 1)[-1]
    except (ValueError, KeyError, TypeError):
        return reply.error_type or "unknown"


def _limit_memory(pid: int, memory_mb: int) -> None:
    """Bounds the runtime's address space.

    Set from outside right after spawning rather than in a pre-exec hook: a hook forces a full
    fork() of this multi-threaded (gRPC) process, where posix_spawn is both faster and safe.
    The interpreter needs milliseconds before user code runs, so the limit is in place first.
    """
    limit = (memory_mb + ADDRESS_SPACE_OVERHEAD_MB) * 1024 * 1024
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL to the runtime's process group (it leads one): helpers it forked go too.

    Once the runtime is reaped its pid may belong to someone else: then nothing is sent."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
