"""Shutdown of ``klambda up``: named, bounded steps and a backstop that always ends the process.

Ctrl-C (SIGINT) or SIGTERM asks for a graceful stop: the gateway stops accepting and in-flight
invocations get up to the grace period to finish, then every child is stopped. A second signal
skips what is left of the drain. Each step is named, so a slow one is logged with what it waited
on; and a watchdog thread — which runs even if the event loop is stuck — ends the process once the
grace period plus ``BACKSTOP_SLACK`` has passed, after dumping every thread's stack to the log.
Children go with it: each was started with a parent-death signal (klambda.api.lifecycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from klambda.api.tasks import cancel_and_wait

log = logging.getLogger("klambda.shutdown")

BACKSTOP_SLACK = 5.0
"""Seconds past the grace period before the watchdog ends the process."""
SLOW_STEP = 1.0
"""A step taking longer than this is logged with its name."""


class Shutdown:
    """The stop request (first signal), the skip-the-drain request (second) and the backstop."""

    def __init__(
        self, grace: float, out: TextIO = sys.stderr, slack: float = BACKSTOP_SLACK
    ) -> None:
        self.grace = grace
        self.slack = slack
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.step = "starting"
        self._out = out
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.signalled)

    def signalled(self) -> None:
        if self.requested.is_set():
            if not self.forced.is_set():
                print("stopping now (in-flight invocations are not waited for)", file=self._out)
                self.forced.set()
            return
        self.requested.set()
        self._arm()

    def _arm(self) -> None:
        deadline = self.grace + self.slack
        threading.Thread(
            target=self._backstop, args=(deadline,), name="shutdown-backstop", daemon=True
        ).start()

    def _backstop(self, after: float) -> None:
        time.sleep(after)
        message = f"shutdown did not finish within {after:.0f}s (waiting on: {self.step}); exiting"
        log.error(message)
        print(f"klambda: {message}", file=sys.stderr, flush=True)
        self._log_tasks()
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None and hasattr(stream, "fileno"):
                with contextlib.suppress(Exception):
                    stream.flush()
                    faulthandler.dump_traceback(file=stream, all_threads=True)
        os._exit(1)  # children get their parent-death signal

    def _log_tasks(self) -> None:
        """Best effort, from this thread: what each asyncio task was waiting in."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            for task in list(asyncio.all_tasks(self._loop)):
                frames = task.get_stack(limit=3)
                where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames)
                log.error("task %s waits in %s", task.get_name(), where or "(not started)")

    def named(
        self, name: str, fn: Callable[[], Awaitable[object]], drain: bool = False
    ) -> Callable[[], Awaitable[None]]:
        """``fn`` as a shutdown step: its name is what the backstop reports, a slow one is
        logged, and a draining step is cut short by a second signal."""

        async def run() -> None:
            self.step = name
            started = time.monotonic()
            if drain:
                await self._unless_forced(fn())
            else:
                await fn()
            took = time.monotonic() - started
            if took > SLOW_STEP:
                log.warning("shutdown step %r took %.1fs", name, took)

        return run

    async def _unless_forced(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        forced = asyncio.ensure_future(self.forced.wait())
        try:
            await asyncio.wait({task, forced}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await cancel_and_wait([forced, task])
            raise
        await cancel_and_wait([forced])
        if task.done():
            await task  # ended by itself: its outcome, errors included, is the step's
        else:
            await cancel_and_wait([task])  # cut short by a second signal
