"""Supervision of one runtime process: spawn, memory limits, peak memory, kill, exit.

The environment (``environment``) is the Runtime API's state machine; this is the operating
system's side of it. A runtime runs in its own process group (a kill takes whatever it forked),
dies with the shim (parent-death signal), has its address space bounded, and has its peak
resident memory read from /proc as Lambda's ``Max Memory Used``. An external runtime (an
image's container, beside the shim) has no process here: it "exits" when the shim gives up on it.
A runtime forked by a zygote (``zygote``) is not the shim's child: the zygote reports its exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Coroutine
from typing import Any

from klambda.api.lifecycle import die_with_parent
from klambda.shim.zygote import Zygote

# Headroom over memorySize for the interpreter's and libraries' own mappings: the limit
# bounds a runaway handler without making a 128 MB function unable to start.
ADDRESS_SPACE_OVERHEAD_MB = 1024


class RuntimeProcess:
    """The runtime's process (or, for an external runtime, a stand-in that only ends)."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self._forked: int | None = None
        """The pid of a runtime a zygote forked (then ``process`` is None)."""
        self._code: int | None = None
        self.exited: asyncio.Task[int] | None = None
        """Ends with the exit status (negative: the signal) when the runtime is gone."""
        self.oom = False
        """The memory watchdog killed it."""
        self._status_fd = -1
        self._peak_mb = 0
        self._gone: asyncio.Event | None = None

    async def spawn(
        self,
        command: list[str],
        cwd: str,
        env: dict[str, str],
        output: int,
        memory_mb: int,
        uid: int | None = None,
    ) -> None:
        """``uid``: the user it runs as (``die_with_parent``); None: the shim's."""
        self.process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            # its own process group, so a kill takes whatever it started as well; and it
            # dies with the shim even if the shim is killed outright
            start_new_session=True,
            preexec_fn=die_with_parent(uid=uid),
        )
        self._watch(self.process.pid, memory_mb, self.process.wait())

    async def fork(
        self,
        zygote: Zygote,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        output: int,
        memory_mb: int,
    ) -> None:
        """As ``spawn``, from ``zygote`` (raises ZygoteGone when it cannot)."""
        pid = await zygote.fork(argv, env, cwd, output)
        self._forked = pid
        self._watch(pid, memory_mb, zygote.exited(pid))

    def _watch(self, pid: int, memory_mb: int, ended: Coroutine[Any, Any, int]) -> None:
        _limit_memory(pid, memory_mb)
        with contextlib.suppress(OSError):
            self._status_fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        self.exited = asyncio.create_task(self._ended(ended))

    async def _ended(self, ended: Coroutine[Any, Any, int]) -> int:
        self._code = await ended
        return self._code

    def external(self) -> None:
        """No process of ours: the runtime lives beside the shim until the shim gives up."""
        self._gone = asyncio.Event()
        self.exited = asyncio.create_task(self._gone_code(self._gone))

    @staticmethod
    async def _gone_code(gone: asyncio.Event) -> int:
        await gone.wait()
        return -signal.SIGKILL

    def abandon(self) -> bool:
        """Marks an external runtime as given up on; True the first time."""
        if self._gone is None or self._gone.is_set():
            return False
        self._gone.set()
        return True

    def kill(self) -> None:
        """SIGKILL to the runtime's process group (Lambda discards, it does not ask)."""
        if self.pid is not None:
            _kill_group(self.pid, self.process)

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        return None if self._code is not None else self._forked

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else self._code

    def max_memory_used_mb(self, alive: bool = True) -> int:
        """Peak resident memory (VmHWM), in MB rounded up.

        One pread of /proc/<pid>/status on an fd kept open: this runs on every invocation.
        Once the process is gone the last reading stands (a crash or a timeout kill).
        """
        if self._status_fd < 0 or not alive:
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

    def enforce_memory(self, limit_mb: int) -> None:
        """Kills the runtime once its peak memory passes ``limit_mb``, as Lambda's cgroup does."""
        if self.max_memory_used_mb() > limit_mb and self.pid is not None:
            self.oom = True
            _kill_group(self.pid, self.process)

    def close(self) -> None:
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1


def _limit_memory(pid: int, memory_mb: int) -> None:
    """Bounds the runtime's address space.

    Set from outside right after spawning: the interpreter needs milliseconds before user code
    runs, so the limit is in place first, and nothing but the parent-death signal has to run
    between fork and exec.
    """
    limit = (memory_mb + ADDRESS_SPACE_OVERHEAD_MB) * 1024 * 1024
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def _kill_group(pid: int, process: asyncio.subprocess.Process | None) -> None:
    """SIGKILL to the runtime's process group (it leads one): helpers it forked go too.

    Once the runtime is reaped its pid may belong to someone else: then nothing is sent (the
    caller passes no pid for a forked runtime whose exit was reported)."""
    if process is not None and process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
