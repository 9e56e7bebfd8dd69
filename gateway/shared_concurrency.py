"""Concurrency limits kept in Redis, so several gateway replicas enforce them together (the
rules are ``concurrency``'s: reserved concurrency per function, the regional limit for the
rest; Lambda's throttle reasons).

Each invocation in flight is a holder in a sorted set (score: when it expires): the function's
own (``klambda:concurrency:<ns>:<fn>``) when it has reserved concurrency, else the shared
``klambda:concurrency:unreserved``. Taking a place and counting the holders is one Lua script,
so replicas cannot both take the last one. A holder lasts ``LEASE`` seconds and its replica
renews its holders every ``LEASE / 3``: a replica that dies gives its places back within
``LEASE`` seconds, however long its calls would have run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.gateway.concurrency import ACCOUNT_EXCEEDED, RESERVED_EXCEEDED, FunctionKey
from klambda.gateway.errors import ServiceError, TooManyRequests

log = logging.getLogger(__name__)

LEASE = 10.0
PREFIX = "klambda:concurrency"

# KEYS: holders; ARGV: holder, limit, lease ms. 1: taken; 0: the limit is reached.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS: holders...; ARGV: lease ms, then one holder per key. Renews the holders still there.
_RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]))
end
return #KEYS
"""


def holders_key(key: FunctionKey | None) -> str:
    return f"{PREFIX}:{key[0]}:{key[1]}" if key is not None else f"{PREFIX}:unreserved"


class SharedConcurrency:
    """This replica's side of the limits in Redis."""

    def __init__(
        self, client: aioredis.Redis, replica: str | None = None, lease: float = LEASE
    ) -> None:
        self.client = client
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lease_ms = int(lease * 1000)
        self.lease = lease
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, str] = {}
        """holder -> its key, for the renewals."""
        self._numbers = itertools.count()

    async def acquire(self, key: FunctionKey, reserved: int | None, pool: int) -> str:
        """Takes a place for one invocation (in the function's reservation, or in the shared
        ``pool``); returns its holder, or raises TooManyRequests with Lambda's reason."""
        holder = f"{self.replica}:{next(self._numbers)}"
        limit = reserved if reserved is not None else pool
        where = holders_key(key if reserved is not None else None)
        try:
            taken = await self._take(keys=[where], args=[holder, limit, self.lease_ms])
        except (RedisError, OSError) as e:  # no count, no admission: the caller may retry
            raise ServiceError(f"concurrency accounting is unavailable: {e}") from e
        if not taken:
            raise TooManyRequests(RESERVED_EXCEEDED if reserved is not None else ACCOUNT_EXCEEDED)
        self._held[holder] = where
        return holder

    async def release(self, holder: str) -> None:
        where = self._held.pop(holder, None)
        if where is not None:
            with contextlib.suppress(RedisError, OSError):  # it expires by itself
                await self.client.zrem(where, holder)

    async def renew_once(self) -> None:
        held = list(self._held.items())
        if held:
            await self._renew(
                keys=[w for _, w in held], args=[self.lease_ms, *(h for h, _ in held)]
            )

    async def run(self) -> None:
        """Renews this replica's holders until cancelled."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew_once()
            except (RedisError, OSError) as e:
                log.warning("concurrency accounting: renewal failed: %s", e)
