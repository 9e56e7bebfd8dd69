"""FIFO queues (SQS's): the messages of one message group in order, one batch of a group at a
time, groups in parallel; sends deduplicated for five minutes.

Part of the queue engine (``queues``), with the same calls as a standard ``Queue``. The
messages are a Redis stream in send order, each with its ``group``; no consumer group: a
receive (one Lua script) scans from the oldest message and takes messages of groups nobody
holds, in order, up to the count, and holds their groups until the visibility timeout (keys
``<queue>:held`` group -> deadline, ``<queue>:inflight`` message -> group, ``<queue>:counts``
message -> receive count). A group whose batch failed stays held until its timeout, then its
first message comes back first, so a failure blocks its group until the message succeeds or
goes to the dead-letter queue, as SQS's FIFO queues do. Deleting (or moving) a group's last
held message frees the group at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import cast

import redis.asyncio as aioredis

from klambda.api.routes import QueueCounts
from klambda.gateway.queues import Fields, Keyed, Message, Queue, _decode, _flat, _text

DEDUPLICATION_WINDOW = 300
SCAN_LIMIT = 2000
"""Messages one receive looks through for ones of free groups (bounded work per call)."""
WAIT_SLICE = 0.25

# KEYS: stream, dedup key (or none); ARGV: message id to remember, then field, value, ...
_SEND = """
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then return seen end
end
local args = {}
for i = 1, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(args))
if KEYS[2] then redis.call('SET', KEYS[2], id, 'EX', 300) end
return id
"""

# Frees the groups whose visibility timeout has run out (their messages come back).
_EXPIRE = """
local function expire(held, inflight, now)
  local groups = redis.call('HGETALL', held)
  local gone = {}
  for i = 1, #groups, 2 do
    if tonumber(groups[i + 1]) <= now then
      gone[groups[i]] = true
      redis.call('HDEL', held, groups[i])
    end
  end
  if next(gone) then
    local ids = redis.call('HGETALL', inflight)
    for i = 1, #ids, 2 do
      if gone[ids[i + 1]] then redis.call('HDEL', inflight, ids[i]) end
    end
  end
end
"""

# KEYS: stream, inflight, counts; ARGV: oldest ms kept. Trims messages past the retention
# period and forgets them in flight and their receive counts (their group frees itself when its
# visibility timeout runs out, as after any failed batch).
_TRIM = """
local oldest = tonumber(ARGV[1])
local gone = redis.call('XTRIM', KEYS[1], 'MINID', oldest)
if gone > 0 then
  for _, key in ipairs({KEYS[2], KEYS[3]}) do
    for _, id in ipairs(redis.call('HKEYS', key)) do
      local ms = tonumber(string.match(id, '^(%d+)-'))
      if ms and ms < oldest then redis.call('HDEL', key, id) end
    end
  end
end
return gone
"""

# KEYS: stream, held, inflight, counts; ARGV: now ms, visibility ms, count, scan limit
_RECEIVE = (
    _EXPIRE
    + """
local now, deadline = tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2])
local want, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
expire(KEYS[2], KEYS[3], now)
local blocked, taken, out = {}, {}, {}
local groups = redis.call('HKEYS', KEYS[2])
for _, g in ipairs(groups) do blocked[g] = true end
local cursor, scanned = '-', 0
while #out < want and scanned < limit do
  local entries = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 200)
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    scanned = scanned + 1
    local id, fields = e[1], e[2]
    local group = ''
    for i = 1, #fields, 2 do if fields[i] == 'group' then group = fields[i + 1] end end
    if not blocked[group] then
      taken[group] = true
      redis.call('HSET', KEYS[3], id, group)
      local n = redis.call('HINCRBY', KEYS[4], id, 1)
      out[#out + 1] = {id, n, fields}
      if #out >= want then break end
    end
    cursor = '(' .. id
  end
end
for g, _ in pairs(taken) do redis.call('HSET', KEYS[2], g, deadline) end
return out
"""
)

# KEYS: stream, held, inflight, counts, target stream (or the stream itself); ARGV: mode
# ('delete' or 'move'), then per message: id, number of fields n, 2n field/value strings
# (n = 0 when deleting). A group with no message left in flight is freed.
_SETTLE = """
local at, gone, freed = 2, 0, {}
while at <= #ARGV do
  local id, n = ARGV[at], tonumber(ARGV[at + 1])
  local args = {}
  for i = at + 2, at + 1 + 2 * n do args[#args + 1] = ARGV[i] end
  at = at + 2 + 2 * n
  local group = redis.call('HGET', KEYS[3], id)
  if redis.call('XDEL', KEYS[1], id) == 1 then
    gone = gone + 1
    if ARGV[1] == 'move' then redis.call('XADD', KEYS[5], '*', unpack(args)) end
  end
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  if group then freed[group] = true end
end
if next(freed) then
  local still = {}
  local ids = redis.call('HVALS', KEYS[3])
  for _, g in ipairs(ids) do still[g] = true end
  for g, _ in pairs(freed) do
    if not still[g] then redis.call('HDEL', KEYS[2], g) end
  end
end
return gone
"""


class MissingGroup(ValueError):
    """A FIFO message needs a message group."""


def deduplication_id(body: str, given: str | None, content_based: bool) -> str | None:
    """The id a send is deduplicated by: the one given, else (contentBasedDeduplication) the
    SHA-256 of the body; ValueError when neither (SQS refuses such a send)."""
    if given:
        return given
    if content_based:
        return hashlib.sha256(body.encode()).hexdigest()
    raise ValueError(
        "The queue should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    )


class FifoQueue:
    """One FIFO queue; its calls are those of ``queues.Queue``."""

    def __init__(self, client: aioredis.Redis, key: str, group: str = "klambda") -> None:
        self.client = client
        self.key = key
        self.held_key = f"{key}:held"
        self.inflight_key = f"{key}:inflight"
        self.counts_key = f"{key}:counts"
        self.delayed_key = f"{key}:delayed"
        self._send = client.register_script(_SEND)
        self._receive = client.register_script(_RECEIVE)
        self._settle = client.register_script(_SETTLE)
        self._trim = client.register_script(_TRIM)
        self._plain = Queue(client, key, group)
        """The same stream read as a plain one: delays, retention and peeks are the same."""

    async def release_due(self, most: int = 100) -> int:
        return await self._plain.release_due(most)

    async def expire(self, retention: float) -> int:
        """Deletes messages past ``retention`` seconds, and what the queue kept of them."""
        oldest_ms = max(0, int((time.time() - retention) * 1000))
        keys = [self.key, self.inflight_key, self.counts_key]
        return int(await self._trim(keys=keys, args=[oldest_ms]))

    async def send_later(self, fields: Fields, seconds: float) -> str:
        return await self._plain.send_later(fields, seconds)

    async def peek(self, count: int) -> list[Message]:
        return await self._plain.peek(count)

    @property
    def _keys(self) -> list[str]:
        return [self.key, self.held_key, self.inflight_key, self.counts_key]

    async def ensure(self) -> None:
        """Nothing to make: the stream appears with its first message."""

    async def send(self, fields: Fields, deduplication: str | None = None) -> str:
        """Adds a message (``fields`` holds its ``group``); a send with the deduplication id
        of one in the last five minutes adds nothing and returns that message's id."""
        if not fields.get("group"):
            raise MissingGroup("a FIFO queue's messages need a message group")
        keys = [self.key] + ([f"{self.key}:dedup:{deduplication}"] if deduplication else [])
        return _text(await self._send(keys=keys, args=_flat(fields)))

    async def receive(
        self,
        consumer: str,
        count: int,
        visibility_timeout: float,
        block: float | None = None,
        reclaim: bool = True,
    ) -> list[Message]:
        """Up to ``count`` messages of groups nobody holds, in order (waiting up to ``block``
        seconds for some)."""
        deadline = time.monotonic() + (block or 0)
        while True:
            out = await self._take(count, visibility_timeout)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            # new messages wake the wait; freed groups are seen within a slice
            await self.client.xread({self.key: "$"}, block=int(min(left, WAIT_SLICE) * 1000) or 1)

    async def _take(self, count: int, visibility_timeout: float) -> list[Message]:
        now_ms = int(time.time() * 1000)
        args = [now_ms, max(1, int(visibility_timeout * 1000)), count, SCAN_LIMIT]
        reply = await self._receive(keys=self._keys, args=args)
        out = []
        for entry_id, receives, flat in cast(list[tuple[bytes, int, list[bytes]]], reply or []):
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            out.append(Message(_text(entry_id), _decode(fields), int(receives)))
        return out

    async def delete(self, ids: Sequence[str], quota: object = None) -> int:
        """Removes received messages; a group none of whose messages is held any more is
        free at once."""
        if not ids:
            return 0
        args: list[str | int] = ["delete"]
        for i in ids:
            args += [i, 0]
        return int(await self._settle(keys=[*self._keys, self.key], args=args))

    async def move(
        self, messages: Sequence[tuple[str, Fields]], to: Keyed | None = None, **_: object
    ) -> None:
        """Moves received messages (with the fields given) to ``to`` (another FIFO queue: a
        dead-letter queue), off this one, in one step."""
        if not messages:
            return
        target = to.key if to is not None else self.key
        args: list[str | int] = ["move"]
        for message_id, fields in messages:
            args += [message_id, len(fields), *_flat(fields)]
        await self._settle(keys=[*self._keys, target], args=args)

    async def counts(self) -> QueueCounts:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.key)
            pipe.hlen(self.inflight_key)
            pipe.zcard(self.delayed_key)
            pipe.xrange(self.key, count=1)
            length, in_flight, delayed, first = await pipe.execute()
        oldest = 0.0
        if first:
            oldest = max(0.0, time.time() - int(_text(first[0][0]).split("-", 1)[0]) / 1000)
        visible = max(0, int(length) - int(in_flight))
        return QueueCounts(visible, int(in_flight), int(delayed), oldest)

    async def purge(self) -> None:
        """Deletes every message (SQS's PurgeQueue); held groups are free again."""
        keys = [self.key, self.held_key, self.inflight_key, self.counts_key, self.delayed_key]
        await self.client.delete(*keys)


def fifo_fields(body: str, group: str, deduplication: str | None) -> Mapping[str, str]:
    out = {"body": body, "group": group}
    if deduplication:
        out["dedup"] = deduplication
    return out


async def send_message(
    engine: Queue | FifoQueue, fields: Fields, delay: float = 0, deduplication: str | None = None
) -> str:
    """A producer's message, by the queue's kind: a FIFO queue deduplicates it (and delays no
    single message, as SQS); a standard one holds it ``delay`` seconds when asked."""
    if isinstance(engine, FifoQueue):
        return await engine.send(fields, deduplication)
    if delay:
        return await engine.send_later(fields, delay)
    return await engine.send(fields)


def queue_for(client: aioredis.Redis, key: str, fifo: bool) -> Queue | FifoQueue:
    """The engine of a queue: a FIFO queue keeps its groups and in-flight set itself."""
    return FifoQueue(client, key) if fifo else Queue(client, key)
