"""Concurrency limits (pure): the regional limit, reserved concurrency, and throttling.

Concurrency is the number of invocations in flight, each holding one execution environment.
A function with reserved concurrency R may have at most R in flight (R = 0 disables it), and
those R are kept out of the shared pool; every other function shares what is left of the
regional limit. Over a limit, Lambda throttles at once with TooManyRequestsException.
"""

from __future__ import annotations

from collections import defaultdict

from klambda.gateway.errors import TooManyRequests

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"

FunctionKey = tuple[str, str]


class ConcurrencyLimiter:
    def __init__(self, regional_limit: int) -> None:
        self.regional_limit = regional_limit
        self.reserved_total = 0
        self._inflight: dict[FunctionKey, int] = defaultdict(int)
        self._unreserved_inflight = 0

    @property
    def unreserved_pool(self) -> int:
        return max(0, self.regional_limit - self.reserved_total)

    def inflight(self, key: FunctionKey) -> int:
        return self._inflight.get(key, 0)

    def acquire(self, key: FunctionKey, reserved: int | None) -> None:
        """Counts one invocation in, or raises TooManyRequests with Lambda's reason."""
        if reserved is not None:
            if self._inflight[key] >= reserved:
                raise TooManyRequests(RESERVED_EXCEEDED)
        elif self._unreserved_inflight >= self.unreserved_pool:
            raise TooManyRequests(ACCOUNT_EXCEEDED)
        else:
            self._unreserved_inflight += 1
        self._inflight[key] += 1

    def release(self, key: FunctionKey, reserved: int | None) -> None:
        self._inflight[key] -= 1
        if not self._inflight[key]:
            del self._inflight[key]
        if reserved is None:
            self._unreserved_inflight -= 1
