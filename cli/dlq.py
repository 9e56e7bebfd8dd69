"""``klambda dlq``: what a dead-letter queue holds, and sending it back to a function.

``list`` shows each message with the attributes Lambda sets (RequestID, ErrorCode,
ErrorMessage). ``redrive`` hands every message to a function as a new asynchronous event, each
in one atomic step (``queues.Queue.move``): a message is in the queue or in the async queue,
never both, never neither, so running it again only finds what arrived since.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import TextIO

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.routes import queue_key
from klambda.cli.client import AdminClient, ApiError
from klambda.cli.commands import CliError
from klambda.cli.state import PlatformState
from klambda.gateway.async_queue import GROUP, QUEUED, STREAM, AsyncEvent
from klambda.gateway.queues import Message, Queue, Quota

REDRIVE_CONSUMER = "klambda-redrive"
REDRIVE_VISIBILITY = 300.0


def dlq(args: argparse.Namespace, out: TextIO) -> int:
    try:
        return _dlq(args, out)
    except RedisError as e:
        raise CliError(f"cannot reach the platform's Redis: {e}") from e


def _dlq(args: argparse.Namespace, out: TextIO) -> int:
    state = PlatformState.find(Path(args.data_dir).expanduser().resolve())
    if args.dlq_command == "list":
        return asyncio.run(_list(state, args.namespace, args.queue, args.limit, out))
    try:
        AdminClient(state).get("Function", args.namespace, args.to)
    except ApiError as e:  # never move messages to a function that would drop them
        raise CliError(f'function "{args.to}" not found in namespace {args.namespace}') from e
    key = _async_key(Path(state.data_dir))
    moved = asyncio.run(_redrive(state, args.namespace, args.queue, args.to, args.qualifier, key))
    out.write(f"redrove {moved} message(s) from {args.queue} to {args.to}\n")
    return 0


async def _list(state: PlatformState, namespace: str, name: str, limit: int, out: TextIO) -> int:
    client = aioredis.Redis.from_url(state.redis_url)
    try:
        messages = await Queue(client, queue_key(namespace, name)).peek(limit)
    finally:
        await client.aclose()
    if not messages:
        out.write(f"queue {name} is empty\n")
        return 0
    for m in messages:
        attributes = _attributes(m)
        out.write(
            f"{m.id}  RequestID={attributes.get('RequestID', '-')}  "
            f"ErrorCode={attributes.get('ErrorCode', '-')}  "
            f"ErrorMessage={attributes.get('ErrorMessage', '-')}\n"
            f"    {m.fields.get('body', '')[:200]}\n"
        )
    return 0


async def _redrive(
    state: PlatformState,
    namespace: str,
    name: str,
    function: str,
    qualifier: str | None,
    key: bytes | None,
) -> int:
    client = aioredis.Redis.from_url(state.redis_url)
    source = Queue(client, queue_key(namespace, name))
    target = Queue(client, STREAM, GROUP)
    moved = 0
    try:
        await source.ensure()
        while batch := await source.receive(REDRIVE_CONSUMER, 100, REDRIVE_VISIBILITY):
            moves = []
            for m in batch:
                event = AsyncEvent(
                    str(uuid.uuid4()),
                    namespace,
                    function,
                    qualifier,
                    m.fields.get("body", ""),
                    time.time(),
                )
                moves.append((m.id, {"event": event.encode(key)}))
            await source.move(moves, target, entering=Quota(QUEUED, namespace, 0))
            moved += len(moves)
    finally:
        await client.aclose()
    return moved


def _attributes(m: Message) -> dict[str, str]:
    try:
        doc = json.loads(m.fields.get("attributes", "{}"))
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: str(v.get("stringValue", "")) for k, v in doc.items() if isinstance(v, dict)}


def _async_key(data_dir: Path) -> bytes | None:
    """The key this data dir's async events are sealed with (``klambda up`` keeps it)."""
    try:
        return (data_dir / "state" / "async.key").read_bytes()
    except FileNotFoundError:
        return None
