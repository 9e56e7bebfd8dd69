"""A keyed work queue with client-go's workqueue semantics, on asyncio.

Reconciling per object needs three guarantees the queue gives: a key waits in the queue at most
once however many changes name it (changes coalesce); a key is handled by one worker at a time
(a key added while it is handled goes round again once that worker is done, so no change is
missed and no two reconciles of one object race); and failures back off per key, so one broken
object never slows the others. ``add_after`` schedules a key (retries, resync), keeping the
earliest time asked for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.5, max_delay: float = 60.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: K) -> None:
        """Queues ``key`` unless it already waits; a key being handled goes round again."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._idle.clear()
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queues ``key`` after ``delay`` seconds (at once when <= 0); an earlier time already
        asked for wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: K) -> float:
        """Queues ``key`` again after its backoff (doubling per failure since its last
        ``forget``, up to ``max_delay``) and returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` was handled: its next failure backs off from the start again."""
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next key to handle; call ``done`` with it afterwards."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()
        elif not self._dirty and not self._processing:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Returns once nothing waits or is handled (scheduled keys do not count)."""
        await self._idle.wait()

    def waiting(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Cancels every scheduled key."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
