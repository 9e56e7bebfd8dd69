"""The shim's core: environments of one function version, invoked one event at a time each."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from klambda.api.shim_config import ShimConfig
from klambda.shim.environment import Environment, Invocation, Outcome, State, environ
from klambda.shim.pool import Busy, EnvironmentPool
from klambda.shim.runtime_api import RuntimeApi
from klambda.shim.zygote import Zygote, ZygoteKeeper, python_of

log = logging.getLogger(__name__)

__all__ = ["Busy", "InvokeArgs", "Shim"]


@dataclass
class InvokeArgs:
    """An invocation as the gateway hands it over."""

    payload: bytes
    invoked_function_arn: str = ""
    request_id: str = ""
    trace_id: str = ""
    client_context: str = ""
    cognito_identity: str = ""
    deadline: float | None = None
    """Seconds the caller will wait, when it said; caps the function's timeout."""
    tail_log: bool = False
    """Return the invocation's last 4 KB of log."""


class Shim:
    """Runs invocations of one function version in a pool of environments."""

    def __init__(self, config: ShimConfig, command: list[str]) -> None:
        self.config = config
        self.command = command
        self.runtime_api = RuntimeApi(
            config.runtime_api_host, config.runtime_uid if config.runtime_uid >= 0 else None
        )
        self.pool = EnvironmentPool(
            self._create_environment,
            config.max_environments,
            config.idle_timeout,
            config.acquire_timeout,
            on_gone=self.runtime_api.detach,
        )
        self._inflight: set[asyncio.Task[Outcome]] = set()
        self.serving = False
        """The gRPC server takes invocations (set once it listens, cleared on drain)."""
        self.runtime_api.not_ready = self.not_ready
        self.zygotes: ZygoteKeeper | None = None

    async def start(self) -> None:
        await self.runtime_api.start(self.config.grpc_host, self.config.health_port)
        await self._start_zygote()
        self.pool.start(self.config.prewarm)
        self.pool.set_provisioned(self.config.provisioned_concurrency)

    async def _start_zygote(self) -> None:
        c = self.config
        python = python_of(self.command)
        if not c.zygote or c.external_runtime or python is None:
            return
        env = environ(c, self.command, "", "", "on-demand")  # what each child replaces is its own
        uid = c.runtime_uid if c.runtime_uid >= 0 else None
        self.zygotes = ZygoteKeeper(lambda: Zygote.start(python, env, c.code_dir, uid))
        await self.zygotes.start()

    def not_ready(self) -> str | None:
        """Why the shim should get no traffic now (its pod's readiness); None: ready."""
        if not self.serving:
            return "the shim is not serving"
        return self.pool.cannot_start

    async def _create_environment(self, init_type: str) -> Environment:
        env = Environment(
            self.config,
            self.command,
            runtime_api="",
            init_type=init_type,
            on_exit=self.pool.environment_exited,
            on_abandon=self.runtime_api.abandon,
            zygotes=self.zygotes,
        )
        env.runtime_api = await self.runtime_api.attach(env, self.config.runtime_api_port)
        try:
            await env.start()
        except BaseException:
            await self.runtime_api.detach(env)
            raise
        return env

    def start_invocation(self, args: InvokeArgs) -> asyncio.Task[Outcome]:
        """Starts one invocation; it runs to its end whoever waits for it (a sync Lambda
        invocation is not cancelled when its caller disconnects, and the environment must stay
        consistent). The shim owns the task (``drain`` waits for it)."""
        task = asyncio.get_running_loop().create_task(self._run(args))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def invoke(self, args: InvokeArgs) -> Outcome:
        """Runs one invocation to its end, even if the caller stops waiting (shielded)."""
        return await asyncio.shield(self.start_invocation(args))

    async def _run(self, args: InvokeArgs) -> Outcome:
        request_id = args.request_id or str(uuid.uuid4())
        timeout = float(self.config.timeout)
        if args.deadline is not None:
            timeout = max(0.001, min(timeout, args.deadline))
        env, cold = await self.pool.acquire()
        try:
            if cold:
                failure = await env.wait_ready()
                if failure is not None:
                    return Outcome(failure.payload, failure.error_type, 0.0, env.init_duration_ms)
            deadline_ms = int((time.time() + timeout) * 1000)
            inv = Invocation(
                request_id,
                args.payload,
                args.invoked_function_arn or self.config.function_arn,
                deadline_ms,
                args.trace_id,
                args.client_context,
                args.cognito_identity,
                args.tail_log,
            )
            outcome = await env.invoke(inv, timeout)
            if not cold:
                outcome.init_duration_ms = None
            return outcome
        finally:
            if env.state is State.DEAD:  # first: a fixed port must be free for the next one
                await self.runtime_api.detach(env)
            await self.pool.release(env)

    async def drain(self, grace: float) -> None:
        """Waits up to ``grace`` seconds for in-flight invocations to finish."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)

    async def close(self) -> None:
        await self.pool.close()
        if self.zygotes is not None:
            await self.zygotes.close()
        await self.runtime_api.close()
