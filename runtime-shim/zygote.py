"""The shim's side of a zygote (``zygote_main.py``): one pre-initialised interpreter per shim
that forks Python execution environments, so a cold start skips interpreter start-up and
awslambdaric's imports (tens of milliseconds, more when several start at once on few CPUs)
and its Init Duration is the function's own init.

The zygote runs as the runtime user, with the environment a runtime of this shim gets, and
dies with the shim; its children die with it. They are not the shim's children: the zygote
reaps them and reports each exit. Anything that goes wrong with the zygote only costs speed:
environments are then spawned as before (``RuntimeProcess.spawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from klambda.api.lifecycle import die_with_parent

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).with_name("zygote_main.py")
START_TIMEOUT = 20.0
"""Seconds the zygote may take to import awslambdaric and say it is ready."""
RESTART_DELAY = 1.0
"""Seconds between a zygote's death and its successor's start (a crash loop stays slow)."""


class ZygoteGone(Exception):
    """The zygote cannot fork (it died, or refused): spawn instead."""


class Zygote:
    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process = process
        self.control = control
        self._forks: deque[asyncio.Future[int]] = deque()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read(), name="zygote-reader")
        self.alive = True

    @classmethod
    async def start(
        cls, python: str, env: dict[str, str], cwd: str, uid: int | None
    ) -> Zygote | None:
        """A ready zygote of the interpreter ``python``, or None (logged) if it cannot be had."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                python,
                str(SCRIPT),
                str(theirs.fileno()),
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,  # stderr: the shim's, where its errors show
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                preexec_fn=die_with_parent(uid=uid),
            )
        except OSError as e:
            ours.close()
            log.warning("no zygote (%s): environments are spawned", e)
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours)
        try:
            await asyncio.wait_for(asyncio.shield(zygote._ready), START_TIMEOUT)
        except (TimeoutError, ZygoteGone) as e:
            log.warning("no zygote (%s; its error is above): environments are spawned", e)
            await zygote.close()
            return None
        return zygote

    async def fork(self, argv: list[str], env: dict[str, str], cwd: str, output: int) -> int:
        """A new environment's pid: ``python -m awslambdaric``'s ``argv`` (after ``-m``)."""
        if not self.alive:
            raise ZygoteGone("the zygote is gone")
        message = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
        loop = asyncio.get_running_loop()
        async with self._lock:  # one request at a time: answers come back in order
            answer: asyncio.Future[int] = loop.create_future()
            self._forks.append(answer)
            try:
                socket.send_fds(self.control, [message], [output])
            except OSError as e:
                self._forks.remove(answer)
                raise ZygoteGone(f"the zygote is gone: {e}") from None
            return await answer

    async def exited(self, pid: int) -> int:
        """The environment's exit status (the code, or minus the signal), once it ends."""
        try:
            return await self._exits[pid]
        finally:
            self._exits.pop(pid, None)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self.control, 1 << 16)
                if not data:
                    break
                self._message(json.loads(data))
        except (OSError, ValueError) as e:
            log.warning("zygote connection failed: %s", e)
        finally:
            self._gone()

    def _message(self, message: dict[str, Any]) -> None:
        if message.get("ready"):
            self._ready.set_result(None)
        elif "exit" in message:
            done = self._exits.get(int(message["exit"]))
            if done is not None and not done.done():
                done.set_result(int(message["status"]))
        elif self._forks:
            answer = self._forks.popleft()
            if "pid" in message:  # its exit may be the next message: be ready for it
                pid = int(message["pid"])
                self._exits[pid] = asyncio.get_running_loop().create_future()
                answer.set_result(pid)
            else:
                answer.set_exception(ZygoteGone(str(message.get("error", "refused"))))

    def _gone(self) -> None:
        """No more forks; children still running are SIGKILLed by their parent-death signal
        (the zygote is gone), so each is reported as killed."""
        self.alive = False
        if not self._ready.done():
            self._ready.set_exception(ZygoteGone("the zygote exited"))
            self._ready.exception()
        while self._forks:
            self._forks.popleft().set_exception(ZygoteGone("the zygote exited"))
        for done in self._exits.values():
            if not done.done():
                done.set_result(-9)

    async def close(self) -> None:
        self.alive = False
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._gone()
        self.control.close()


class ZygoteKeeper:
    """The shim's zygote, started again when it dies (not more often than RESTART_DELAY);
    environments are spawned while there is none. One that never started is not retried: its
    error (awslambdaric missing, say) would only repeat."""

    def __init__(self, start: Callable[[], Awaitable[Zygote | None]]) -> None:
        self._start = start
        self._zygote: Zygote | None = None
        self._restart: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        self._zygote = await self._start()

    def current(self) -> Zygote | None:
        """The zygote to fork from now, if any (a dead one is replaced in the background)."""
        zygote = self._zygote
        if zygote is None or zygote.alive:
            return zygote
        if self._restart is None and not self._closed:
            self._restart = asyncio.create_task(self._restarted(zygote), name="zygote-restart")
        return None

    async def _restarted(self, dead: Zygote) -> None:
        try:
            await dead.close()
            await asyncio.sleep(RESTART_DELAY)
            if not self._closed:
                log.warning("the zygote died: starting another")
                self._zygote = await self._start()
        finally:
            self._restart = None

    async def close(self) -> None:
        self._closed = True
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        if self._zygote is not None:
            await self._zygote.close()


def python_of(command: list[str]) -> str | None:
    """The interpreter of a ``python -m awslambdaric HANDLER`` command; None for others."""
    if len(command) == 4 and command[1:3] == ["-m", "awslambdaric"]:
        return command[0]
    return None
