"""Streams with Kinesis's semantics on Redis: one Redis stream per shard, read, never consumed.

Part of the queue engine (``queues``): the only other module that talks to Redis streams. A
record is an entry ``pk`` (partition key) and ``data`` (base64) in the stream
``<prefix>:<shard index>``, its shard picked by the MD5 of its partition key
(``stream_records.shard_for``); its entry id is its arrival time and its position
(``stream_records.sequence_number`` makes the Kinesis-like sequence number). Records are kept
for the retention period (each put trims entries older than that), whoever has read them:
every mapping keeps its own checkpoint per shard, so several read one stream independently.

What a reader needs besides records:

- ``Leases``: one owner per (mapping, shard) at a time, a key with an expiry that its owner
  renews; a dead owner's shards are free once it expires. Checkpoint writes are fenced by the
  lease (a Lua script writes only for the lease's holder), so a poller that lost its lease
  cannot move the checkpoint back.
- ``Checkpoints``: per mapping, the entry id each shard was read up to, durable in a hash.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import redis.asyncio as aioredis

from klambda.api.routes import ShardCounts
from klambda.gateway.stream_records import sequence_number, shard_for

START = "0-0"
"""The id before any record (TRIM_HORIZON reads after it)."""


@dataclass(frozen=True)
class Record:
    id: str
    """The Redis entry id: ``<arrival ms>-<n>``."""
    partition_key: str
    data: bytes

    @cached_property  # read several times per record by the poller: worked out once
    def sequence(self) -> str:
        return sequence_number(self.id)

    @cached_property
    def arrival(self) -> float:
        return int(self.id.split("-", 1)[0]) / 1000


class Stream:
    """One stream: its shards' Redis streams under ``prefix``."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, shards: int, retention_hours: int = 24
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.shards = shards
        self.retention_ms = retention_hours * 3600 * 1000

    def shard_key(self, shard: int) -> str:
        return f"{self.prefix}:{shard}"

    async def put(
        self, records: Sequence[tuple[str, bytes]], explicit_hash_key: str | None = None
    ) -> list[tuple[int, str]]:
        """Adds (partition key, data) records, in order; returns (shard, sequence number) of
        each. Entries older than the retention period go in the same step."""
        oldest = max(0, int(time.time() * 1000) - self.retention_ms)
        async with self.client.pipeline(transaction=False) as pipe:
            shards = []
            for partition_key, data in records:
                shard = shard_for(partition_key, self.shards, explicit_hash_key)
                shards.append(shard)
                fields = {"pk": partition_key, "data": base64.b64encode(data).decode()}
                pipe.xadd(self.shard_key(shard), fields, minid=oldest, approximate=True)  # type: ignore[arg-type]
            ids = await pipe.execute()
        return [(s, sequence_number(_text(i))) for s, i in zip(shards, ids, strict=True)]

    async def read(self, shard: int, after: str, count: int) -> list[Record]:
        """Up to ``count`` records of ``shard`` after entry id ``after``."""
        reply = await self.client.xrange(self.shard_key(shard), min=f"({after}", count=count)
        return [_record(i, f) for i, f in cast(list[tuple[bytes, dict[bytes, bytes]]], reply)]

    async def wait(self, shard: int, after: str, seconds: float) -> bool:
        """Waits up to ``seconds`` for a record after ``after``; True when one is there."""
        reply = await self.client.xread(
            {self.shard_key(shard): after}, count=1, block=max(1, int(seconds * 1000))
        )
        return bool(reply)

    async def latest(self, shard: int) -> str:
        """The id of the shard's newest record (START when it has none): LATEST reads after
        it."""
        reply = await self.client.xrevrange(self.shard_key(shard), count=1)
        return _first_id(reply)

    async def before(self, shard: int, timestamp: float) -> str:
        """The id just before the first record that arrived at or after ``timestamp``
        (AT_TIMESTAMP reads after it)."""
        at_ms = max(0, int(timestamp * 1000))
        reply = await self.client.xrevrange(self.shard_key(shard), max=f"({at_ms}-0", count=1)
        return _first_id(reply)

    async def counts(self) -> list[ShardCounts]:
        """Each shard's record count and newest sequence number."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.xlen(self.shard_key(shard))
                pipe.xrevrange(self.shard_key(shard), count=1)
            replies = await pipe.execute()
        out = []
        for shard in range(self.shards):
            length, newest = replies[2 * shard], replies[2 * shard + 1]
            seq = sequence_number(_text(newest[0][0])) if newest else ""
            out.append(ShardCounts(int(length), seq))
        return out


META = "meta"
"""``<prefix>:meta``: the stream's declaration (``shards``, ``retentionHours``), which
producers read to find a record's shard."""


async def declare(client: aioredis.Redis, prefix: str, shards: int, retention_hours: int) -> None:
    """Writes the stream's declaration (its shards and retention) for producers to read."""
    mapping: dict[str, int] = {"shards": shards, "retentionHours": retention_hours}
    await cast("Awaitable[int]", client.hset(f"{prefix}:{META}", mapping=mapping))


async def declared(client: aioredis.Redis, prefix: str) -> Stream | None:
    """The stream as declared; None when no Stream object made it."""
    meta = await cast("Awaitable[dict[bytes, bytes]]", client.hgetall(f"{prefix}:{META}"))
    if not meta or b"shards" not in meta:
        return None
    retention = int(meta.get(b"retentionHours", b"24"))
    return Stream(client, prefix, int(meta[b"shards"]), retention)


# KEYS: lease; ARGV: owner, milliseconds. Takes a free lease or renews one's own.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

# KEYS: lease; ARGV: owner
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease, checkpoints hash; ARGV: owner, shard, entry id[, tumbling window ("": none)]
_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2] .. ':window')
elseif ARGV[4] then
  redis.call('HSET', KEYS[2], ARGV[2] .. ':window', ARGV[4])
end
return 1
"""


class LeaseLost(Exception):
    """The shard's lease is someone else's now: stop working on it."""


class Leases:
    """Shard leases and checkpoints of one mapping (``prefix``: its key, unique per mapping)."""

    def __init__(self, client: aioredis.Redis, prefix: str, owner: str) -> None:
        self.client = client
        self.prefix = prefix
        self.owner = owner
        self.checkpoints_key = f"{prefix}:checkpoints"
        self.workers_key = f"{prefix}:workers"
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._checkpoint = client.register_script(_CHECKPOINT)

    def lease_key(self, shard: int) -> str:
        return f"{self.prefix}:lease:{shard}"

    async def acquire(self, shard: int, seconds: float) -> bool:
        """Takes the shard's lease if it is free, or renews it if it is ours."""
        ms = max(1, int(seconds * 1000))
        return bool(await self._acquire(keys=[self.lease_key(shard)], args=[self.owner, ms]))

    async def release(self, shard: int) -> None:
        await self._release(keys=[self.lease_key(shard)], args=[self.owner])

    async def checkpoint(self, shard: int, entry_id: str, window: str | None = None) -> None:
        """Records that the shard was processed up to ``entry_id`` (and, with ``window``, the
        tumbling window it is in, "" for none) in one step; LeaseLost when the lease is no
        longer ours (nothing written)."""
        keys = [self.lease_key(shard), self.checkpoints_key]
        args: list[str | int] = [self.owner, shard, entry_id]
        if window is not None:
            args.append(window)
        if not await self._checkpoint(keys=keys, args=args):
            raise LeaseLost(f"shard {shard}")

    async def window_of(self, shard: int) -> str | None:
        """The tumbling window stored with the shard's checkpoint (JSON), if any."""
        found = await cast(
            "Awaitable[bytes | None]", self.client.hget(self.checkpoints_key, f"{shard}:window")
        )
        return _text(found) if found is not None else None

    async def checkpoint_of(self, shard: int) -> str | None:
        found = await cast(
            "Awaitable[bytes | None]", self.client.hget(self.checkpoints_key, str(shard))
        )
        return _text(found) if found is not None else None

    async def heartbeat(self, seconds: float) -> int:
        """Announces this worker as alive for ``seconds``; returns how many are (itself
        included), so each takes its share of the shards."""
        now = time.time()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.workers_key, {self.owner: now + seconds})
            pipe.zremrangebyscore(self.workers_key, "-inf", now)
            pipe.zcard(self.workers_key)
            pipe.expire(self.workers_key, max(1, int(seconds * 4)))
            *_, alive, _ = await pipe.execute()
        return int(alive)

    async def leave(self) -> None:
        await self.client.zrem(self.workers_key, self.owner)


def _record(entry_id: bytes, fields: dict[bytes, bytes]) -> Record:
    data = fields.get(b"data", b"")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:  # written by hand without base64: the bytes as they are
        raw = data
    return Record(_text(entry_id), fields.get(b"pk", b"").decode(errors="replace"), raw)


def _first_id(reply: object) -> str:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
    return _text(entries[0][0]) if entries else START


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
