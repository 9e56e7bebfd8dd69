"""The one queue engine: every queue klambda keeps is a Redis stream read by one consumer group.

Asynchronous invocations, the queues event sources poll, destinations and dead-letter queues
all use it; nothing else in klambda talks to Redis streams. What it provides, with SQS's
semantics:

- ``send``: durable once it returns (an XADD; with a per-owner quota checked in the same
  script when asked).
- ``receive``: up to ``count`` messages; ones whose visibility timeout ran out (idle in the
  group's pending list that long) come back first, their receive count one higher, then new
  ones, waiting up to ``block`` seconds for the first.
- ``resume``: a consumer's own pending messages, so a worker restarted under its stable name
  takes back what it held at once; ``extend`` keeps held messages visible to nobody else
  (a heartbeat: a live worker's messages are never reclaimed, a dead one's soon are).
- ``delete``, ``delay`` (to a due-time set, back on the stream when due: ``release_due``) and
  ``move`` to another queue: each a Lua script that checks before it writes, so a message is in
  exactly one place (MULTI/EXEC would not undo an XADD failing at run time, and the XACK/XDEL
  after it would lose the message).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from klambda.api.routes import QueueCounts

Fields = Mapping[str, str]


class Keyed(Protocol):
    """A queue as a move's target: its Redis key is all a move needs."""

    key: str


@dataclass(slots=True)  # not frozen: made per message on the hot path, 5x faster
class Message:
    """One received message: its id, its fields, and how often it has been received."""

    id: str
    fields: dict[str, str]
    receive_count: int = 1


@dataclass(frozen=True)
class Quota:
    """Messages one owner may have in a queue at once, counted in a hash: a send past it is
    refused; a message leaving the queue (``delete``, ``move`` out) no longer counts."""

    key: str
    owner: str
    limit: int


class QueueFull(Exception):
    """The owner already has ``Quota.limit`` messages in the queue."""


# KEYS: stream, quota hash (or none), mark (or none); ARGV: owner, limit, mark value, then
# field, value, ... With a mark, the message is added only if the mark holds less than the
# value, which it then holds: a claim and a send in one step (a schedule's firing is sent once
# however many schedulers try).
_SEND = """
local mark = KEYS[3] and KEYS[3] ~= ''
if mark and tonumber(redis.call('GET', KEYS[3]) or '-1') >= tonumber(ARGV[3]) then
  return 0
end
if KEYS[2] and KEYS[2] ~= '' then
  local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  if held >= tonumber(ARGV[2]) then return false end
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
local args = {}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(args))
if mark then redis.call('SET', KEYS[3], ARGV[3]) end
return id
"""

# KEYS: source stream, target stream, quota hash (or none); ARGV: group, owner whose count
# the message leaves ('' none), owner whose count it enters ('' none), count of messages, then
# per message: id, number of fields n, 2n field/value strings. The target may be the source (a
# requeue: the message goes to the back as a new entry).
_MOVE = """
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'stream' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. kind .. ', not a queue')
end
local at = 5
for m = 1, tonumber(ARGV[4]) do
  local id, n = ARGV[at], tonumber(ARGV[at + 1])
  local args = {}
  for i = at + 2, at + 1 + 2 * n do args[#args + 1] = ARGV[i] end
  at = at + 2 + 2 * n
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    redis.call('XADD', KEYS[2], '*', unpack(args))
    redis.call('XDEL', KEYS[1], id)
    if ARGV[2] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[2], -1) end
    if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
  end
end
return 1
"""

# KEYS: stream, quota hash (or none); ARGV: group, owner, ids (space-separated: one argument
# to send, however many ids)
_DELETE = """
local all = {}
for id in string.gmatch(ARGV[3], '%S+') do all[#all + 1] = id end
local gone = 0
for i = 1, #all, 1000 do  -- in chunks: unpack has a stack limit
  local ids = {unpack(all, i, math.min(i + 999, #all))}
  gone = gone + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  -- an id no longer pending was deleted already (by another receiver, a move or a purge)
  redis.call('XDEL', KEYS[1], unpack(ids))
end
if KEYS[2] and gone > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2], -gone) end
return gone
"""

# KEYS: stream, delayed set; ARGV: group, id, due time, member (JSON fields + nonce)
_DELAY = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  redis.call('XDEL', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: delayed set, stream; ARGV: now, most to move
_RELEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local fields = cjson.decode(member)['f']
  local args = {}
  for k, v in pairs(fields) do args[#args + 1] = k; args[#args + 1] = v end
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


class Queue:
    """One queue: a stream, its consumer group, and (when used) its due-time set."""

    def __init__(self, client: aioredis.Redis, key: str, group: str = "klambda") -> None:
        self.client = client
        self.key = key
        self.group = group
        self.delayed_key = f"{key}:delayed"
        self._send = client.register_script(_SEND)
        self._move = client.register_script(_MOVE)
        self._delete = client.register_script(_DELETE)
        self._delay = client.register_script(_DELAY)
        self._release_due = client.register_script(_RELEASE_DUE)

    async def ensure(self) -> None:
        """Makes the stream and its group (idempotent)."""
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)

    async def send(
        self, fields: Fields, quota: Quota | None = None, mark: tuple[str, int] | None = None
    ) -> str:
        """Adds a message; returns its id. Raises QueueFull past ``quota``. With ``mark``
        (key, value), adds it only if the key holds less than ``value`` and sets it to
        ``value`` in the same step; returns "" when it did not."""
        keys = [self.key, quota.key if quota else ""] + ([mark[0]] if mark else [])
        args: list[str | int] = [quota.owner, quota.limit] if quota else ["", 0]
        args.append(mark[1] if mark else 0)
        added = await self._send(keys=keys, args=args + _flat(fields))
        if added is None:
            raise QueueFull(self.key)
        return "" if added == 0 else _text(added)

    async def receive(
        self,
        consumer: str,
        count: int,
        visibility_timeout: float,
        block: float | None = None,
        reclaim: bool = True,
    ) -> list[Message]:
        """Messages whose visibility timeout ran out first (unless ``reclaim`` is off: a busy
        consumer looks for them now and then), then new ones (waiting up to ``block`` seconds
        for one when there are none)."""
        if not reclaim:
            return await self._read(consumer, ">", count, block)
        idle_ms = max(1, int(visibility_timeout * 1000))
        reply = await self.client.xautoclaim(
            self.key, self.group, consumer, idle_ms, "0-0", count=count
        )
        claimed = cast(list[tuple[bytes, dict[bytes, bytes] | None]], reply[1] if reply else [])
        # entries deleted while pending come back with no fields (Redis 7): skip them
        again = [(i, f) for i, f in claimed if f is not None]
        out = await self._with_counts(again) if again else []
        if len(out) < count:
            out += await self._read(consumer, ">", count - len(out), block)
        return out

    async def resume(self, consumer: str, count: int) -> list[Message]:
        """The messages ``consumer`` holds (received, neither deleted nor moved)."""
        return await self._read(consumer, "0", count, None)

    async def extend(self, consumer: str, ids: Sequence[str]) -> None:
        """Resets the held messages' idle time, so no other consumer reclaims them yet."""
        if ids:
            await self.client.xclaim(self.key, self.group, consumer, 0, list(ids), justid=True)

    async def delete(self, ids: Sequence[str], quota: Quota | None = None) -> int:
        """Removes received messages (done with); returns how many were still held."""
        if not ids:
            return 0
        keys = [self.key] + ([quota.key] if quota else [])
        owner = quota.owner if quota else ""
        return int(await self._delete(keys=keys, args=[self.group, owner, " ".join(ids)]))

    async def move(
        self,
        messages: Sequence[tuple[str, Fields]],
        to: Keyed | None = None,
        *,
        leaving: Quota | None = None,
        entering: Quota | None = None,
    ) -> None:
        """Moves received messages (with the fields given: the originals or new ones) to
        ``to``, or to the back of this queue; each stops counting for ``leaving``'s owner and
        starts counting for ``entering``'s. Raises ResponseError, moving nothing, when the
        target is not a stream."""
        if not messages:
            return
        quotas = [q for q in (leaving, entering) if q is not None]
        if len({q.key for q in quotas}) > 1:
            raise ValueError("one quota hash per move")
        target = to.key if to is not None else self.key
        keys = [self.key, target] + [q.key for q in quotas[:1]]
        args: list[str | int] = [
            self.group,
            leaving.owner if leaving else "",
            entering.owner if entering else "",
            len(messages),
        ]
        for message_id, fields in messages:
            args += [message_id, len(fields), *_flat(fields)]
        await self._move(keys=keys, args=args)

    async def delay(self, message_id: str, fields: Fields, seconds: float) -> bool:
        """Takes a received message off the stream until ``seconds`` from now, with
        ``fields``; False when it was no longer held (someone else took it)."""
        member = json.dumps({"f": dict(fields), "n": secrets.token_hex(8)}, sort_keys=True)
        due = time.time() + seconds
        args: list[str | float] = [self.group, message_id, due, member]
        return bool(await self._delay(keys=[self.key, self.delayed_key], args=args))

    async def release_due(self, most: int = 100) -> int:
        """Puts delayed messages whose time has come back on the stream; returns how many."""
        keys = [self.delayed_key, self.key]
        return int(await self._release_due(keys=keys, args=[time.time(), most]))

    async def expire(self, retention: float) -> int:
        """Deletes messages sent more than ``retention`` seconds ago (SQS's retention
        period); returns how many went."""
        oldest_ms = max(0, int((time.time() - retention) * 1000))
        return int(await self.client.xtrim(self.key, minid=oldest_ms, approximate=False))

    async def purge(self) -> None:
        """Deletes every message (SQS's PurgeQueue); the consumer group stays."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xtrim(self.key, maxlen=0, approximate=False)
            pipe.delete(self.delayed_key)
            await pipe.execute()

    async def send_later(self, fields: Fields, seconds: float) -> str:
        """Adds a message that becomes visible ``seconds`` from now (SQS's DelaySeconds)."""
        token = secrets.token_hex(8)
        member = json.dumps({"f": dict(fields), "n": token}, sort_keys=True)
        await self.client.zadd(self.delayed_key, {member: time.time() + seconds})
        return f"delayed-{token}"

    async def peek(self, count: int) -> list[Message]:
        """The first ``count`` messages in the stream, held ones too, without receiving them."""
        reply = await self.client.xrange(self.key, count=count)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
        return [Message(_text(i), _decode(f)) for i, f in entries]

    async def depth(self) -> int:
        """Messages in the stream (held ones included) plus delayed ones."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.key)
            pipe.zcard(self.delayed_key)
            length, delayed = await pipe.execute()
        return int(length) + int(delayed)

    async def counts(self) -> QueueCounts:
        """What the queue holds now: waiting, received and not deleted, delayed; the age of
        its oldest message (an entry id starts with its send time in milliseconds)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.key)
            pipe.zcard(self.delayed_key)
            pipe.xrange(self.key, count=1)
            length, delayed, first = await pipe.execute()
        in_flight = 0
        if length:
            with contextlib.suppress(ResponseError):  # NOGROUP: nothing received yet
                summary = await self.client.xpending(self.key, self.group)
                in_flight = int(summary["pending"])
        oldest = 0.0
        if first:
            sent_ms = int(_text(first[0][0]).split("-", 1)[0])
            oldest = max(0.0, time.time() - sent_ms / 1000)
        return QueueCounts(max(0, int(length) - in_flight), in_flight, int(delayed), oldest)

    async def _read(
        self, consumer: str, start: str, count: int, block: float | None
    ) -> list[Message]:
        reply = await self.client.xreadgroup(
            self.group,
            consumer,
            {self.key: start},
            count=count,
            block=None if block is None else max(1, int(block * 1000)),
        )
        batches = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply or [])
        entries = [e for _, es in batches for e in es if e[1]]
        if start != ">":  # held already: their counts are in the pending list
            return await self._with_counts(entries)
        return [Message(_text(i), _decode(f)) for i, f in entries]

    async def _with_counts(
        self, entries: Sequence[tuple[bytes, dict[bytes, bytes] | None]]
    ) -> list[Message]:
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self.key, self.group, min=entry_id, max=entry_id, count=1)
            pending = await pipe.execute()
        out = []
        for (entry_id, fields), info in zip(entries, pending, strict=True):
            count = int(info[0]["times_delivered"]) if info else 1
            out.append(Message(_text(entry_id), _decode(fields or {}), count))
        return out


def _flat(fields: Fields) -> list[str | int]:
    out: list[str | int] = []
    for name, value in fields.items():
        out += [name, value]
    return out


def _decode(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
