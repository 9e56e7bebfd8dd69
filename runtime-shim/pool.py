"""The environments of one function version: reuse warm ones, start new ones, reap idle ones.

An environment serves one invocation at a time (Lambda's model), so concurrency here is the
number of busy environments. Two kinds live here:

- provisioned environments (provisioned concurrency): initialised before traffic, never reaped,
  replaced when they die, used first;
- on-demand environments: started by an invocation that finds nothing free (a cold start),
  reused most-recently-used first so the warm set shrinks when load drops, reaped when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from klambda.api.tasks import cancel_and_wait
from klambda.shim.environment import MEMORY_POLL_SECONDS, Environment, State

log = logging.getLogger(__name__)

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
RETRY_MAX = 30.0


class Busy(Exception):
    """Every environment is busy and no new one may start: the caller is throttled."""


class CannotStart(Exception):
    """No environment could be started (the runtime's process could not be spawned): the
    invocation did not start, and until a start succeeds the shim is not ready."""


Create = Callable[[str], Awaitable[Environment]]


class EnvironmentPool:
    """Owns every environment of one shim; ``acquire`` and ``release`` bracket an invocation."""

    def __init__(
        self,
        create: Create,
        max_environments: int,
        idle_timeout: float,
        acquire_timeout: float,
        on_gone: Callable[[Environment], Awaitable[None]] | None = None,
    ) -> None:
        self._create = create
        self._on_gone = on_gone
        self.max_environments = max_environments
        self.idle_timeout = idle_timeout
        self.acquire_timeout = acquire_timeout
        self.provisioned_target = 0
        self._idle: list[Environment] = []  # on-demand, most recently used last
        self._idle_provisioned: list[Environment] = []
        self._all: set[Environment] = set()
        self._starting = 0
        self._starting_provisioned = 0
        self._freed = asyncio.Condition()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._burials: set[asyncio.Task[None]] = set()
        self._closed = False
        self.last_activity = time.monotonic()
        self._busy = 0
        self.cannot_start: str | None = None
        """Why the last attempt to start an environment failed; None once one starts."""
        self._broken = asyncio.Event()

    # ------------------------------------------------------------------ counts

    @property
    def size(self) -> int:
        return len(self._all) + self._starting

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def provisioned_ready(self) -> int:
        return sum(1 for e in self._all if e.provisioned and e.state in (State.IDLE, State.BUSY))

    def _provisioned_count(self) -> int:
        alive = sum(1 for e in self._all if e.provisioned and e.state is not State.DEAD)
        return alive + self._starting_provisioned

    def idle_seconds(self, now: float) -> float:
        return 0.0 if self._busy else now - self.last_activity

    # ------------------------------------------------------------------ lifecycle

    def start(self, prewarm: int = 0) -> None:
        self._tasks = [
            asyncio.create_task(self._reap_forever(), name="reap-idle-environments"),
            asyncio.create_task(self._provision_forever(), name="keep-provisioned"),
            asyncio.create_task(self._watch_memory_forever(), name="memory-limits"),
            asyncio.create_task(self._recover_forever(), name="recover-start"),
        ]
        for _ in range(min(prewarm, self.max_environments)):
            self._tasks.append(asyncio.create_task(self._prewarm_one(), name="prewarm"))

    async def _prewarm_one(self) -> None:
        """An on-demand environment started before it is asked for (its init still counts)."""
        try:
            env = await self._new(ON_DEMAND)
        except CannotStart:  # logged; _recover_forever tries again
            return
        failure = await env.wait_ready()
        if failure is not None:
            self._all.discard(env)
            await env.stop()
            return
        env.prewarmed = True
        self._idle.append(env)
        async with self._freed:
            self._freed.notify()

    def set_provisioned(self, count: int) -> None:
        """Keeps ``count`` environments initialised (extra idle ones become on-demand)."""
        self.provisioned_target = max(0, min(count, self.max_environments))
        surplus = self._provisioned_count() - self.provisioned_target
        while surplus > 0 and self._idle_provisioned:
            env = self._idle_provisioned.pop(0)
            env.provisioned = False
            self._idle.insert(0, env)  # oldest first in line for reaping
            surplus -= 1
        self._changed.set()

    def environment_exited(self, env: Environment) -> None:
        """An environment's process ended on its own (crash, kill): drop it, maybe replace.

        A busy one is cleaned up when its invocation ends (``release``). An idle one is cleaned
        up here, at once: left in the pool it would hold its place (with one environment per
        pod, every later invocation would be throttled), its Runtime API port and its fds.
        """
        idle = env in self._idle or env in self._idle_provisioned
        if env in self._idle:
            self._idle.remove(env)
        if env in self._idle_provisioned:
            self._idle_provisioned.remove(env)
        if idle and env in self._all and not self._closed:
            self._all.discard(env)
            task = asyncio.get_running_loop().create_task(self._bury(env), name="bury-environment")
            self._burials.add(task)
            task.add_done_callback(self._burials.discard)
        if env.provisioned:
            self._changed.set()

    async def _bury(self, env: Environment) -> None:
        log.warning("environment pid=%s exited while idle; it will be replaced", env.pid)
        await env.stop()
        if self._on_gone is not None:
            await self._on_gone(env)
        async with self._freed:  # an invocation waiting for room may start a new one now
            self._freed.notify()

    # ------------------------------------------------------------------ invocations

    async def acquire(self) -> tuple[Environment, bool]:
        """A free environment, and whether it is new (a cold start)."""
        deadline = time.monotonic() + self.acquire_timeout
        while True:
            env = self._pop_idle()
            if env is not None:
                cold = env.prewarmed  # its init has not been reported yet
                env.prewarmed = False
                return self._take(env), cold
            if self._closed:
                raise Busy("the shim is shutting down")
            if self.size < self.max_environments:
                self._busy += 1
                try:
                    return await self._new(ON_DEMAND), True
                except BaseException:
                    self._busy -= 1
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Busy(f"all {self.max_environments} environments are busy")
            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), remaining)

    def _pop_idle(self) -> Environment | None:
        for queue in (self._idle_provisioned, self._idle):
            while queue:
                env = queue.pop()
                if env.state is State.IDLE:
                    return env
                self._all.discard(env)
        return None

    def _take(self, env: Environment) -> Environment:
        self._busy += 1
        self.last_activity = time.monotonic()
        return env

    async def _new(self, init_type: str) -> Environment:
        self._starting += 1
        try:
            env = await self._create(init_type)
        except OSError as e:  # fork, exec, fds, memory: the platform's part, not the code's
            log.error("cannot start an environment: %s", e)
            self.cannot_start = f"{type(e).__name__}: {e}"
            self._broken.set()
            raise CannotStart(f"cannot start an environment: {self.cannot_start}") from e
        finally:
            self._starting -= 1
        self.cannot_start = None
        self._all.add(env)
        return env

    async def _recover_forever(self) -> None:
        """While no environment can start, tries again by itself (1 s doubling to 30 s): a
        shim that is not ready gets no invocations that would try it."""
        while True:
            await self._broken.wait()
            self._broken.clear()
            delay = 1.0
            while self.cannot_start is not None:
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                if self.size < self.max_environments and self.cannot_start is not None:
                    await self._prewarm_one()

    async def release(self, env: Environment) -> None:
        self._busy -= 1
        self.last_activity = time.monotonic()
        if env.state is State.DEAD or self._closed:
            self._all.discard(env)
            await env.stop()
            if env.provisioned:
                self._changed.set()
        elif env.provisioned:
            self._idle_provisioned.append(env)
        else:
            self._idle.append(env)
        async with self._freed:
            self._freed.notify()

    # ------------------------------------------------------------------ provisioned concurrency

    async def _provision_forever(self) -> None:
        delay = 1.0
        while True:
            await self._changed.wait()
            self._changed.clear()
            missing = self.provisioned_target - self._provisioned_count()
            room = self.max_environments - self.size
            wanted = max(0, min(missing, room))
            if not wanted:
                continue
            results = await asyncio.gather(
                *(self._provision_one() for _ in range(wanted)), return_exceptions=True
            )
            if any(r is not True for r in results):
                log.warning("provisioning failed; retrying in %.0fs", delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                self._changed.set()
            else:
                delay = 1.0

    async def _provision_one(self) -> bool:
        self._starting_provisioned += 1
        try:
            env = await self._new(PROVISIONED)
            env.provisioned = True
            failure = await env.wait_ready()
        finally:
            self._starting_provisioned -= 1
        if failure is not None:
            self._all.discard(env)
            await env.stop()
            return False
        self._idle_provisioned.append(env)
        async with self._freed:
            self._freed.notify()
        return True

    # ------------------------------------------------------------------ memory

    async def _watch_memory_forever(self) -> None:
        """One watchdog for all environments, rather than a task per invocation."""
        while True:
            await asyncio.sleep(MEMORY_POLL_SECONDS)
            if self._busy:
                for env in list(self._all):
                    if env.state is State.BUSY:
                        env.enforce_memory()

    # ------------------------------------------------------------------ reaping

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            await self.reap(time.monotonic())

    async def reap(self, now: float) -> int:
        """Stops on-demand environments idle longer than the keep-warm period; returns how many."""
        stale = [e for e in self._idle if now - e.last_used >= self.idle_timeout]
        for env in stale:
            self._idle.remove(env)
            self._all.discard(env)
        for env in stale:
            log.info("stopping environment pid=%s idle for %.0fs", env.pid, now - env.last_used)
            await env.stop()
        return len(stale)

    async def close(self) -> None:
        """Stops every environment; in-flight invocations must have been drained first."""
        self._closed = True
        await cancel_and_wait(self._tasks)
        if self._burials:
            await asyncio.wait(set(self._burials))
        envs = list(self._all)
        self._all.clear()
        self._idle.clear()
        self._idle_provisioned.clear()
        await asyncio.gather(*(e.stop() for e in envs))
