"""Delivers a Stream to a function as Lambda's Kinesis pollers do (decisions: ``stream_policy``).

Per mapping, each poller process (gateway replica) takes a share of the shards: it announces
itself (``Leases.heartbeat``), owns at most ceil(shards / live pollers) shards through leases it
renews, lets go of extras and takes free ones; a dead poller's shards are free once their
leases expire. Per owned shard, one worker reads from the mapping's checkpoint (or its starting
position), ``batchSize`` records at a time, split into ``parallelizationFactor`` lanes by
partition key (records of one key stay in one lane, in order); each lane's batch is invoked,
retried, bisected or given up on (its metadata to the on-failure destination) until it is
settled, and the checkpoint moves past the records once every lane has settled them. The shard
waits meanwhile, as Lambda blocks a shard on a failing batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.event_filter import parse_filters
from klambda.api.routes import EventSourceRoute, StreamRoute
from klambda.gateway import stream_policy as policy
from klambda.gateway import stream_windows as windows
from klambda.gateway.errors import LambdaError
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.stream_records import (
    KinesisRecords,
    failure_record,
    kinesis_record,
    redis_id,
    response_fields,
    shard_id,
)
from klambda.gateway.stream_windows import Window
from klambda.gateway.streams import START, LeaseLost, Leases, Record, Stream, declare
from klambda.gateway.targets import TargetMissing, Targets

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0
IDLE_WAIT = 1.0
ERROR_PAUSE = 1.0


class StreamPoller:
    """One mapping's share of a stream's shards, in this process."""

    def __init__(
        self,
        route: EventSourceRoute,
        client: aioredis.Redis,
        invoker: Invoker,
        targets: Targets,
        owner: str,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        assert route.stream is not None
        self.route = route
        self.source: StreamRoute = route.stream
        self.stream = Stream(client, route.stream.key, route.stream.shards)
        prefix = f"klambda:esm:{route.namespace}:{route.name}:{route.uuid}"
        self.leases = Leases(client, prefix, owner)
        self.invoker = invoker
        self.targets = targets
        self.lease_seconds = lease_seconds
        self.settings = policy.StreamSettings(
            maximum_retry_attempts=self.source.maximum_retry_attempts,
            maximum_record_age_in_seconds=self.source.maximum_record_age,
            bisect_batch_on_function_error=self.source.bisect,
            report_batch_item_failures=route.report_failures,
            parallelization_factor=self.source.parallelization_factor,
            batch_size=route.batch_size,
            tumbling_window_in_seconds=self.source.tumbling_window,
        )
        self.filters = parse_filters(list(route.filters), source="kinesis")
        self.workers: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Keeps this process's share of the shards until cancelled, then lets them go."""
        declared = False
        try:
            while True:
                try:
                    if not declared:  # for producers (on Kubernetes nothing else declares it)
                        s = self.source
                        await declare(self.stream.client, s.key, s.shards, s.retention_hours)
                        declared = True
                    await self._balance()
                except (RedisError, OSError) as e:
                    log.warning("stream %s: %s; retrying", self.source.key, e)
                await asyncio.sleep(self.lease_seconds / 3)
        finally:
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(*self.workers.values(), return_exceptions=True)
            try:
                for shard in self.workers:
                    await self.leases.release(shard)
                await self.leases.leave()
            except (RedisError, OSError):
                pass  # the leases expire by themselves

    async def _balance(self) -> None:
        alive = await self.leases.heartbeat(self.lease_seconds * 2)
        share = math.ceil(self.source.shards / max(1, alive))
        for shard, task in list(self.workers.items()):
            if task.done() or not await self.leases.acquire(shard, self.lease_seconds):
                await self._stop(shard)
        while len(self.workers) > share:  # another poller came: give it its share
            shard = max(self.workers)
            await self._stop(shard)
            await self.leases.release(shard)
        for shard in range(self.source.shards):
            if len(self.workers) >= share:
                break
            if shard not in self.workers and await self.leases.acquire(shard, self.lease_seconds):
                worker = ShardWorker(self, shard)
                self.workers[shard] = asyncio.create_task(
                    worker.run(), name=f"stream-{self.route.name}-{shard}"
                )
        labels = (self.route.namespace, self.route.name)
        self.invoker.metrics.esm_pollers.labels(*labels).set(len(self.workers))

    async def _stop(self, shard: int) -> None:
        task = self.workers.pop(shard)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class ShardWorker:
    """Reads one shard in order and settles each batch before the next."""

    def __init__(self, poller: StreamPoller, shard: int) -> None:
        self.poller = poller
        self.shard = shard
        self.shard_id = shard_id(shard)
        r = poller.route
        self.labels = (r.namespace, r.name)
        self.seconds = poller.source.tumbling_window
        self.window: Window | None = None
        self.role_arn = f"arn:aws:iam::{poller.source.arn.split(':')[4]}:role/{r.function}"
        self.encoder = KinesisRecords(
            shard=self.shard_id,
            stream_arn=poller.source.arn,
            region=r.region,
            role_arn=self.role_arn,
        )

    async def run(self) -> None:
        while True:
            try:
                position = await self._start()
                while True:
                    position = await self._step(position)
            except LeaseLost:
                log.info("stream %s: lost the lease of %s", self.poller.source.key, self.shard_id)
                return
            except (RedisError, OSError) as e:
                log.warning("stream %s %s: %s; retrying", self.poller.source.key, self.shard_id, e)
            await asyncio.sleep(ERROR_PAUSE)

    async def _start(self) -> str:
        """The checkpoint, or (a new mapping) the starting position, recorded at once so a
        restart does not move LATEST on."""
        leases, stream, source = self.poller.leases, self.poller.stream, self.poller.source
        found = await leases.checkpoint_of(self.shard)
        if found is not None:
            if self.seconds:
                self.window = Window.decode(await leases.window_of(self.shard))
            return found
        if source.starting_position == "TRIM_HORIZON":
            position = START
        elif source.starting_position == "AT_TIMESTAMP" and source.starting_timestamp is not None:
            position = await stream.before(self.shard, source.starting_timestamp)
        else:
            position = await stream.latest(self.shard)
        await leases.checkpoint(self.shard, position)
        return position

    async def _step(self, position: str) -> str:
        """Reads the next batch after ``position``, settles it; returns the new position."""
        records = await self._read(position)
        if self.window is not None and windows.closes(
            self.window, records[0].arrival if records else None, time.time()
        ):
            await self._close_window(position)
            return position
        if not records:
            return position
        if self.seconds:  # a batch stays in one window
            opened, count = windows.opening([r.arrival for r in records], self.seconds)
            self.window = self.window or opened
            records = records[:count]
        texts = {r.sequence: self._record_text(r) for r in records}
        matches = self.poller.filters.matches_kinesis
        delivered = (
            [r for r in records if matches(self._event_record(r))]
            if self.poller.filters.patterns
            else records
        )
        filtered = len(records) - len(delivered)
        if filtered:
            self.poller.invoker.metrics.esm_records.labels(*self.labels, "filtered").inc(filtered)
        entries = [policy.Entry(r.sequence, r.arrival, r.partition_key) for r in delivered]
        s = self.poller.settings
        lanes = [
            lane
            for lane in policy.plan_lanes(entries, s.parallelization_factor, len(records))
            if lane
        ]
        single = len(lanes) == 1
        await asyncio.gather(*(self._settle(lane, texts, single) for lane in lanes))
        end = records[-1].id
        await self._checkpoint(end)
        age = max(0.0, time.time() - records[-1].arrival)
        self.poller.invoker.metrics.iterator_age.labels(*self.labels, self.shard_id).set(age)
        if self.window is not None and self.window.cut:  # its state is past 1 MB: ended early
            await self._close_window(end)
        return end

    async def _checkpoint(self, entry_id: str) -> None:
        window = None
        if self.seconds:
            window = self.window.encode() if self.window is not None else ""
        await self.poller.leases.checkpoint(self.shard, entry_id, window)

    async def _close_window(self, position: str) -> None:
        """The window's final invocation (no records, its complete state), retried until it
        succeeds ("Lambda suspends further processing until a successful invocation"); then
        the next window starts empty, or (cut short) the same one goes on empty."""
        window = self.window
        assert window is not None
        doc = {"Records": [], **window.fields(self.shard_id, self.poller.source.arn, final=True)}
        attempts = 0
        while (await self._call(json.dumps(doc).encode()))[0] is not policy.Result.SUCCESS:
            attempts += 1
            await asyncio.sleep(policy.backoff(attempts))
        self.window = windows.Window(window.start, window.end) if window.cut else None
        await self._checkpoint(position)

    async def _read(self, position: str) -> list[Record]:
        """Up to batchSize records, waiting up to a second for the first and then up to the
        batching window for the batch to fill."""
        stream, route = self.poller.stream, self.poller.route
        records = await stream.read(self.shard, position, route.batch_size)
        if not records:
            await stream.wait(self.shard, position, IDLE_WAIT)
            records = await stream.read(self.shard, position, route.batch_size)
        if records and len(records) < route.batch_size and route.batching_window > 0:
            deadline = time.monotonic() + route.batching_window
            while len(records) < route.batch_size and (left := deadline - time.monotonic()) > 0:
                if await stream.wait(self.shard, records[-1].id, left):
                    more = await stream.read(
                        self.shard, records[-1].id, route.batch_size - len(records)
                    )
                    records += more
        return records

    def _record_text(self, record: Record) -> str:
        return self.encoder.encode(
            data=record.data,
            partition_key=record.partition_key,
            sequence=record.sequence,
            arrival=record.arrival,
        )

    def _event_record(self, record: Record) -> dict[str, Any]:
        r = self.poller.route
        return kinesis_record(
            data=record.data,
            partition_key=record.partition_key,
            sequence=record.sequence,
            arrival=record.arrival,
            shard=self.shard_id,
            stream_arn=self.poller.source.arn,
            region=r.region,
            role_arn=self.role_arn,
        )

    async def _settle(
        self, entries: list[policy.Entry], texts: dict[str, str], single: bool
    ) -> None:
        """Invokes one lane's batch until it is settled: done, or given up on (reported).
        ``single``: the only lane, so partial progress is checkpointed as it comes."""
        s = self.poller.settings
        pending: deque[policy.Batch] = deque([policy.Batch(tuple(entries))])
        while pending:
            batch = pending.popleft()
            failed = policy.before_invoke(batch, s, time.time())
            decision: policy.Decision
            payload: bytes | None = None
            if failed is not None:
                decision = failed
            else:
                result, payload, response = await self._invoke(batch, texts)
                decision = policy.after_invoke(batch, s, result, payload)
                self.poller.invoker.metrics.esm_batches.labels(*self.labels, result.value).inc()
            if isinstance(decision, policy.Checkpoint):
                self._count("delivered", len(batch.entries))
                self._carry(payload)
                if single:
                    await self._checkpoint(redis_id(decision.after))
            elif isinstance(decision, policy.Retry):
                if decision.checkpoint is not None and single:
                    self._carry(payload)
                    await self._checkpoint(redis_id(decision.checkpoint))
                await asyncio.sleep(decision.delay)
                pending.appendleft(decision.batch)
            elif isinstance(decision, policy.Split):
                pending.extendleft(reversed(decision.halves))
            else:
                await self._report(decision, response if failed is None else None)
                if decision.then is not None:
                    pending.appendleft(decision.then)

    def _carry(self, payload: bytes | None) -> None:
        """The state a tumbling-window invocation returned goes to the next one."""
        if self.window is not None:
            state, _ = policy.window_response(payload)
            self.window.state = state or {}
            self.window.cut = policy.state_too_large(self.window.state)

    async def _invoke(
        self, batch: policy.Batch, texts: dict[str, str]
    ) -> tuple[policy.Result, bytes | None, dict[str, Any]]:
        """The batch's event: its records' JSON texts joined (and a window's fields)."""
        records = ",".join(texts[e.sequence] for e in batch.entries)
        extra = ""
        if self.window is not None:
            fields = self.window.fields(self.shard_id, self.poller.source.arn, final=False)
            extra = "," + json.dumps(fields, separators=(",", ":"))[1:-1]
        return await self._call(f'{{"Records":[{records}]{extra}}}'.encode())

    async def _call(self, payload: bytes) -> tuple[policy.Result, bytes | None, dict[str, Any]]:
        r = self.poller.route
        try:
            result = await self.poller.invoker.invoke(
                Invocation(r.namespace, r.function, r.qualifier, payload)
            )
        except LambdaError as e:  # did not reach the function: retried, not counted
            log.info("stream %s: batch not delivered: %s", self.poller.source.key, e)
            outcome = policy.Result.THROTTLED if e.status == 429 else policy.Result.PLATFORM_ERROR
            return outcome, None, {"statusCode": e.status}
        response = {
            "statusCode": 200,
            "executedVersion": result.executed_version,
            "functionError": result.function_error or None,
        }
        if result.function_error:
            return policy.Result.FUNCTION_ERROR, result.payload, response
        return policy.Result.SUCCESS, result.payload, response

    async def _report(self, fail: policy.Fail, response: dict[str, Any] | None) -> None:
        """The given-up batch's metadata to the on-failure destination (Lambda's stream
        failure record); without one, the records are skipped (logged, counted)."""
        r, source, batch = self.poller.route, self.poller.source, fail.batch
        self._count("failed", len(batch.entries))
        target = source.on_failure
        if target is None:
            log.warning(
                "stream %s %s: %d record(s) skipped (%s), no on-failure destination",
                source.key,
                self.shard_id,
                len(batch.entries),
                fail.condition,
            )
            return
        doc = failure_record(
            request_id=str(uuid.uuid4()),
            function_arn=self.poller.invoker.arn(r.namespace, r.function, r.qualifier),
            condition=fail.condition,
            invocations=batch.invocations,
            now=time.time(),
            shard=self.shard_id,
            stream_arn=source.arn,
            first_sequence=batch.first.sequence,
            last_sequence=batch.last.sequence,
            first_arrival=batch.first.arrival,
            last_arrival=batch.last.arrival,
            batch_size=len(batch.entries),
            **response_fields(response),
        )
        try:
            await self.poller.targets.deliver(target, r.namespace, json.dumps(doc))
        except (RedisError, LambdaError, TargetMissing) as e:  # Lambda discards them too
            self.poller.invoker.metrics.esm_records.labels(*self.labels, "undelivered").inc(
                len(batch.entries)
            )
            log.error("stream %s: on-failure destination %s failed: %s", source.key, target.arn, e)

    def _count(self, fate: str, n: int) -> None:
        self.poller.invoker.metrics.esm_records.labels(*self.labels, fate).inc(n)
