"""``klambda queue``, ``klambda stream`` and ``klambda schedule``: make, feed, read and remove
queues, streams and schedules.

``create`` applies the same Queue or Stream object a manifest would; ``get``, ``describe`` and
``delete`` are those of the kind. ``send``/``put`` write to Redis with the queue engine, the
way any Redis client can (docs/event-sources.md describes the layout): a queue's attributes
(FIFO, deduplication, delay) come from its object, a stream's shards likewise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TextIO, TypeVar

import redis.asyncio as aioredis
import yaml
from redis.exceptions import RedisError

from klambda.api.routes import queue_key, stream_key
from klambda.api.types import API_VERSION
from klambda.cli import commands
from klambda.cli.client import AdminClient, ApiError
from klambda.cli.commands import CliError
from klambda.cli.state import PlatformState
from klambda.gateway.fifo_queues import (
    FifoQueue,
    deduplication_id,
    fifo_fields,
    queue_for,
    send_message,
)
from klambda.gateway.queues import Message
from klambda.gateway.sqs_records import attribute
from klambda.gateway.stream_records import check_partition_key, shard_id
from klambda.gateway.streams import START, Stream

CLI_CONSUMER = "klambda-cli"
T = TypeVar("T")


def queue(args: argparse.Namespace, out: TextIO) -> int:
    action = args.queue_command
    if action in ("get", "describe", "delete"):
        return _object_command(args, "queues", out)
    if action == "create":
        spec: dict[str, Any] = {"visibilityTimeout": args.visibility_timeout}
        for flag, field in (
            ("delay_seconds", "delaySeconds"),
            ("retention_period", "messageRetentionPeriod"),
        ):
            if getattr(args, flag) is not None:
                spec[field] = getattr(args, flag)
        if args.fifo:
            spec["fifo"] = True
        if args.content_based_deduplication:
            spec["contentBasedDeduplication"] = True
        if (args.dead_letter_queue is None) != (args.max_receive_count is None):
            raise CliError("--dead-letter-queue and --max-receive-count go together", 2)
        if args.dead_letter_queue:
            spec["redrivePolicy"] = {
                "deadLetterQueue": args.dead_letter_queue,
                "maxReceiveCount": args.max_receive_count,
            }
        return _apply(args, "Queue", spec, out)
    state = commands._state(args)
    obj = _get(state, "Queue", args.namespace, args.name)
    return _redis(state, lambda client: _queue_action(client, args, obj, out))


async def _queue_action(
    client: aioredis.Redis, args: argparse.Namespace, obj: dict[str, Any], out: TextIO
) -> int:
    spec = obj.get("spec", {})
    key = queue_key(args.namespace, args.name)
    q = queue_for(client, key, bool(spec.get("fifo")))
    if args.queue_command == "purge":
        await q.purge()
        out.write(f"queue {args.name} purged\n")
        return 0
    if args.queue_command == "receive":
        await q.ensure()
        await q.release_due()  # delayed messages whose time has come are visible
        visibility = args.visibility_timeout or spec.get("visibilityTimeout", 30)
        messages = await q.receive(CLI_CONSUMER, args.max, visibility, block=args.wait)
        for m in messages:
            _print_message(m, out)
        if not messages:
            out.write(f"no message visible in {args.name}\n")
        return 0
    attributes = dict(_attribute(a) for a in args.attribute)
    delay = args.delay if args.delay is not None else spec.get("delaySeconds", 0)
    for body in _lines(args.body):
        fields = {"body": body}
        if attributes:
            fields["attributes"] = json.dumps(attributes)
        if isinstance(q, FifoQueue):
            if not args.group:
                raise CliError(f"queue {args.name} is FIFO: --group is required", 2)
            try:
                dedup = deduplication_id(
                    body, args.deduplication_id, bool(spec.get("contentBasedDeduplication"))
                )
            except ValueError as e:
                raise CliError(f"{e} (--deduplication-id)", 2) from e
            fields |= fifo_fields(body, args.group, dedup)
        else:
            dedup = None
        out.write(await send_message(q, fields, delay, dedup) + "\n")
    return 0


def _print_message(m: Message, out: TextIO) -> None:
    extras = [f"receives={m.receive_count}"]
    if m.fields.get("group"):
        extras.append(f"group={m.fields['group']}")
    if m.fields.get("attributes"):
        extras.append(f"attributes={m.fields['attributes']}")
    out.write(f"{m.id}  {'  '.join(extras)}\n    {m.fields.get('body', '')}\n")


def _attribute(spec: str) -> tuple[str, dict[str, Any]]:
    try:
        return attribute(spec)
    except ValueError as e:
        raise CliError(str(e), 2) from e


def stream(args: argparse.Namespace, out: TextIO) -> int:
    action = args.stream_command
    if action in ("get", "describe", "delete"):
        return _object_command(args, "streams", out)
    if action == "create":
        spec = {"shards": args.shards, "retentionHours": args.retention_hours}
        return _apply(args, "Stream", spec, out)
    state = commands._state(args)
    obj = _get(state, "Stream", args.namespace, args.name)
    s = obj.get("spec", {})
    return _redis(
        state,
        lambda client: _stream_action(
            Stream(
                client,
                stream_key(args.namespace, args.name),
                s.get("shards", 1),
                s.get("retentionHours", 24),
            ),
            args,
            out,
        ),
    )


async def _stream_action(s: Stream, args: argparse.Namespace, out: TextIO) -> int:
    if args.stream_command == "put":
        return await _put(s, args, out)
    shards = [args.shard] if args.shard is not None else list(range(s.shards))
    if any(not 0 <= shard < s.shards for shard in shards):
        raise CliError(f"stream {args.name} has shards 0 to {s.shards - 1}", 2)
    positions = {sh: START if args.start == "TRIM_HORIZON" else await s.latest(sh) for sh in shards}
    shown = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (args.wait if args.start == "LATEST" else 0)
    while True:
        for shard in shards:
            for r in await s.read(shard, positions[shard], args.limit - shown):
                positions[shard] = r.id
                data = r.data.decode(errors="replace")
                out.write(f"{shard_id(shard)}  {r.sequence}  {r.partition_key}  {data}\n")
                shown += 1
        left = deadline - loop.time()
        if shown >= args.limit or left <= 0:
            return 0
        await asyncio.sleep(min(left, 0.2))


async def _put(s: Stream, args: argparse.Namespace, out: TextIO) -> int:
    if args.data and not args.partition_key:
        raise CliError("--partition-key is required with DATA", 2)
    if args.partition_key:
        records = [(args.partition_key, d) for d in _lines(args.data)]
    else:
        records = [_keyed(line) for line in _lines([])]
    for key, _ in records:
        try:
            check_partition_key(key)
        except ValueError as e:
            raise CliError(str(e), 2) from e
    for shard, sequence in await s.put([(k, d.encode()) for k, d in records]):
        out.write(f"{shard_id(shard)}  {sequence}\n")
    return 0


def schedule(args: argparse.Namespace, out: TextIO) -> int:
    if args.schedule_command != "create":
        return _object_command(args, "schedules", out)
    target: dict[str, Any] = {"function": args.function}
    if args.input is not None:
        target["input"] = args.input
    spec: dict[str, Any] = {
        "scheduleExpression": args.expression,
        "target": target,
        "timezone": args.timezone,
        "state": "DISABLED" if args.disabled else "ENABLED",
    }
    return _apply(args, "Schedule", spec, out)


def _keyed(line: str) -> tuple[str, str]:
    key, tab, data = line.partition("\t")
    if not tab:
        raise CliError("each line of stdin is KEY<TAB>DATA (or give --partition-key)", 2)
    return key, data


def _lines(given: Iterable[str]) -> list[str]:
    """The values given, else one per line of stdin."""
    given = list(given)
    return given if given else [line.rstrip("\n") for line in sys.stdin if line.strip()]


def _apply(args: argparse.Namespace, kind: str, spec: dict[str, Any], out: TextIO) -> int:
    doc = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": spec,
    }
    try:
        (result,) = AdminClient(commands._state(args)).apply([doc])
    except ApiError as e:
        raise commands._admin_error(e) from e
    out.write(f"{kind.lower()}/{args.name} {result['result']}\n")
    return 0


def _get(state: PlatformState, kind: str, namespace: str, name: str) -> dict[str, Any]:
    try:
        return AdminClient(state).get(kind, namespace, name)
    except ApiError as e:
        if e.status == 404:
            raise CliError(f'{kind.lower()} "{name}" not found in namespace {namespace}') from e
        raise commands._admin_error(e) from e


def _object_command(args: argparse.Namespace, kind: str, out: TextIO) -> int:
    action = getattr(args, f"{kind[:-1]}_command")  # queue_command, stream_command, ...
    names = [args.name] if getattr(args, "name", None) else []
    if action == "delete":
        return commands.delete(argparse.Namespace(**vars(args), kind=kind, names=names), out)
    if action == "get":
        output = getattr(args, "output", "table")
        ns = argparse.Namespace(
            **vars(args) | {"kind": kind, "names": names, "output": output, "all_namespaces": False}
        )
        return commands.get(ns, out)
    obj = _get(commands._state(args), kind[:-1].capitalize(), args.namespace, args.name)
    yaml.safe_dump(obj, out, sort_keys=False)
    return 0


def _redis(state: PlatformState, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def run() -> T:
        client = aioredis.Redis.from_url(state.redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as e:
        raise CliError(f"cannot reach the platform's Redis: {e}") from e


def add_parsers(sub: Any, common: argparse.ArgumentParser, ns: argparse.ArgumentParser) -> None:
    """The ``queue`` and ``stream`` commands' arguments."""
    both = [common, ns]
    q = sub.add_parser("queue", help="queues: create, send, receive, purge, get, delete")
    qs = q.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    c = qs.add_parser("create", parents=both, help="create (or change) a Queue")
    c.add_argument("name")
    c.add_argument("--visibility-timeout", type=int, default=30, metavar="S")
    c.add_argument("--delay-seconds", type=int, metavar="S")
    c.add_argument("--retention-period", type=int, metavar="S")
    c.add_argument("--fifo", action="store_true", help="first-in-first-out, by message group")
    c.add_argument("--content-based-deduplication", action="store_true")
    c.add_argument("--dead-letter-queue", metavar="DLQ")
    c.add_argument("--max-receive-count", type=int, metavar="N")
    s = qs.add_parser("send", parents=both, help="send messages; prints their ids")
    s.add_argument("name")
    s.add_argument("body", nargs="*", help="message bodies (none: one per line of stdin)")
    s.add_argument("--group", help="message group (FIFO queues)")
    s.add_argument("--deduplication-id", help="FIFO: deduplication id")
    s.add_argument("--attribute", action="append", default=[], metavar="K[:TYPE]=V")
    s.add_argument("--delay", type=int, metavar="S", help="seconds before it is visible")
    r = qs.add_parser("receive", parents=both, help="receive messages (they come back later)")
    r.add_argument("name")
    r.add_argument("--max", type=int, default=10)
    r.add_argument("--visibility-timeout", type=float, metavar="S")
    r.add_argument("--wait", type=float, default=0.0, metavar="S")
    p = qs.add_parser("purge", parents=both, help="delete every message")
    p.add_argument("name")
    _object_parsers(qs, both)
    st = sub.add_parser("stream", help="streams: create, put, read, get, delete")
    ss = st.add_subparsers(dest="stream_command", required=True, metavar="ACTION")
    c = ss.add_parser("create", parents=both, help="create (or change) a Stream")
    c.add_argument("name")
    c.add_argument("--shards", type=int, required=True)
    c.add_argument("--retention-hours", type=int, default=24)
    pt = ss.add_parser("put", parents=both, help="put records; prints shard and sequence")
    pt.add_argument("name")
    pt.add_argument("data", nargs="*", help="records (none: lines KEY<TAB>DATA from stdin)")
    pt.add_argument("--partition-key", metavar="K")
    rd = ss.add_parser("read", parents=both, help="print records")
    rd.add_argument("name")
    rd.add_argument("--shard", type=int)
    rd.add_argument(
        "--from", dest="start", choices=("TRIM_HORIZON", "LATEST"), default="TRIM_HORIZON"
    )
    rd.add_argument("--limit", type=int, default=100)
    rd.add_argument("--wait", type=float, default=10.0, metavar="S", help="LATEST: wait this long")
    _object_parsers(ss, both)
    sc = sub.add_parser("schedule", help="schedules: create, get, describe, delete")
    scs = sc.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    c = scs.add_parser("create", parents=both, help="create (or change) a Schedule")
    c.add_argument("name")
    c.add_argument("--expression", required=True, help="rate(...), cron(...) or at(...)")
    c.add_argument("--function", required=True, metavar="NAME[:QUALIFIER]")
    c.add_argument("--input", metavar="JSON", help="the event (default: a Scheduled Event)")
    c.add_argument("--timezone", default="UTC")
    c.add_argument("--disabled", action="store_true", help="state DISABLED")
    _object_parsers(scs, both)


def _object_parsers(actions: Any, parents: list[argparse.ArgumentParser]) -> None:
    g = actions.add_parser("get", parents=parents, help="list them (or one)")
    g.add_argument("name", nargs="?")
    g.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    actions.add_parser("describe", parents=parents, help="print one with its status").add_argument(
        "name"
    )
    actions.add_parser("delete", parents=parents, help="delete one").add_argument("name")
