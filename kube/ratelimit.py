"""A token bucket for requests to the API server (client-go's QPS and burst).

A reconcile pass over many objects, or a bug that loops, must not flood the API server: every
request takes a token; tokens refill at ``qps`` per second up to ``burst``. The decision is pure
(``reserve`` returns how long to wait) so it is tested without a clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Takes a token (perhaps one not yet there); returns the seconds to wait for it."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
