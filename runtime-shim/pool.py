"""The environments of one function version: reuse warm ones, start new ones, reap idle ones.

An environment serves one invocation at a time (Lambda's model), so concurrency here is the
number of busy environments. Warm environments are reused most-recently-used first, which keeps
the set of warm environments small when load drops, so idle ones age out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from klambda.shim.environment import Environment, State

log = logging.getLogger(__name__)


class Busy(Exception):
    """Every environment is busy and no new one may start: the caller is throttled."""


class EnvironmentPool:
    """Owns every environment of one shim; ``acquire`` and ``release`` bracket an invocation."""

    def __init__(
        self,
        create: Callable[[], Awaitable[Environment]],
        max_environments: int,
        idle_timeout: float,
        acquire_timeout: float,
    ) -> None:
        self._create = create
        self.max_environments = max_environments
        self.idle_timeout = idle_timeout
        self.acquire_timeout = acquire_timeout
        self._idle: list[Environment] = []
        self._all: set[Environment] = set()
        self._starting = 0
        self._freed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._all) + self._starting

    @property
    def busy(self) -> int:
        return self.size - len(self._idle)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="reap-idle-environments")

    async def acquire(self) -> tuple[Environment, bool]:
        """A free environment, and whether it is new (a cold start)."""
        deadline = time.monotonic() + self.acquire_timeout
        while True:
            while self._idle:
                env = self._idle.pop()
                if env.state is State.IDLE:
                    return env, False
                self._all.discard(env)
            if self._closed:
                raise Busy("the shim is shutting down")
            if self.size < self.max_environments:
                return await self._new(), True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Busy(f"all {self.max_environments} environments are busy")
            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), remaining)

    async def _new(self) -> Environment:
        self._starting += 1
        try:
            env = await self._create()
        finally:
            self._starting -= 1
        self._all.add(env)
        return env

    async def release(self, env: Environment) -> None:
        if env.state is State.DEAD or self._closed:
            self._all.discard(env)
            await env.stop()
        else:
            self._idle.append(env)
        async with self._freed:
            self._freed.notify()

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            await self.reap(time.monotonic())

    async def reap(self, now: float) -> int:
        """Stops environments idle for longer than the keep-warm period; returns how many."""
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
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        envs = list(self._all)
        self._all.clear()
        self._idle.clear()
        await asyncio.gather(*(e.stop() for e in envs))
