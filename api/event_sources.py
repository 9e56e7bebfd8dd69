"""Event source mappings as the world declares them (pure): whether each can deliver, its
poller's route and its Lambda EventSourceMappingConfiguration.

A mapping's problem depends on its function's versions and aliases (which qualifier it names,
their timeouts against the queue's visibility timeout) and on the Queue or Stream it reads, so
it is decided from a ``World`` holding that function and those sources (``function_world``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from klambda.api import publishing
from klambda.api.arn import account_for, function_arn, queue_arn, stream_arn
from klambda.api.async_settings import destination
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import (
    LATEST,
    EventSource,
    EventSourceRoute,
    Intake,
    QueueRoute,
    StreamRoute,
    queue_key,
    stream_key,
)
from klambda.api.types import (
    FIFO_BATCH_MAX,
    AliasSpec,
    EventSourceMappingSpec,
    QueueSpec,
    StreamSpec,
    starting_timestamp,
)
from klambda.api.world import World


def event_source_problem(world: World, obj: ApiObject) -> tuple[Reason, str] | None:
    """Why a mapping cannot deliver (reason, message); None when it can."""
    spec: EventSourceMappingSpec = obj.spec
    fn = world.functions.get((obj.namespace, spec.function_name))
    if fn is None:
        return Reason.FUNCTION_NOT_FOUND, f'Function "{spec.function_name}" not found'
    key = (obj.namespace, spec.function_name)
    timeouts = _timeouts(world, key, fn, spec.qualifier)
    if timeouts is None:
        return (
            Reason.QUALIFIER_NOT_FOUND,
            f"{spec.function_name} has no version or alias {spec.qualifier!r}",
        )
    if spec.source.stream is not None:
        if world.streams.get((obj.namespace, spec.source.stream)) is None:
            return Reason.STREAM_NOT_FOUND, f'Stream "{spec.source.stream}" not found'
        if spec.tumbling_window_in_seconds and (spec.parallelization_factor or 1) > 1:
            return (
                Reason.INVALID_SOURCE,
                "a tumbling window keeps one state per shard: it needs parallelizationFactor 1",
            )
        return None
    assert spec.source.queue is not None
    queue = world.queues.get((obj.namespace, spec.source.queue))
    if queue is None:
        return Reason.QUEUE_NOT_FOUND, f'Queue "{spec.source.queue}" not found'
    qspec: QueueSpec = queue.spec
    visibility, timeout = qspec.visibility_timeout, max(timeouts)
    if visibility < timeout:  # Lambda's rule, and its words
        return (
            Reason.QUEUE_VISIBILITY_TIMEOUT_TOO_SHORT,
            f"Queue visibility timeout: {visibility} seconds is less than Function timeout: "
            f"{timeout} seconds",
        )
    if qspec.fifo and spec.effective_batch_size > FIFO_BATCH_MAX:
        return (
            Reason.INVALID_SOURCE,
            f"Batch size must be between 1 and {FIFO_BATCH_MAX} for a FIFO queue (queue "
            f"{spec.source.queue})",
        )
    if qspec.fifo and spec.maximum_batching_window_in_seconds:
        return (
            Reason.INVALID_SOURCE,
            f"Batching window is not supported for FIFO queues (queue {spec.source.queue})",
        )
    return None


def _timeouts(
    world: World, key: tuple[str, str], fn: ApiObject, qualifier: str | None
) -> list[int] | None:
    """Timeouts of the versions ``qualifier`` may invoke (an alias: each of its versions);
    None when it names nothing."""
    numbered = world.numbered(key)

    def timeout_of(version: str) -> int:
        if version == LATEST or version not in numbered:
            return int(fn.spec.timeout)
        return int(publishing.spec_of(numbered[version].status).timeout)

    if qualifier in (None, LATEST):
        return [int(fn.spec.timeout)]
    if qualifier in numbered:
        return [timeout_of(qualifier)]
    for a in world.aliases.get(key, []):
        if (a.spec.name or a.name) == qualifier:
            spec: AliasSpec = a.spec
            weights = spec.routing_config.additional_version_weights if spec.routing_config else {}
            return [timeout_of(v) for v in (spec.function_version, *weights)]
    return None


def event_sources(world: World, region: str) -> list[EventSource]:
    """Every mapping with its problem, poller route and Lambda configuration, in name order."""
    return [
        event_source(world, obj, region)
        for obj in sorted(world.event_sources, key=lambda o: (o.namespace, o.name))
    ]


def event_source(world: World, obj: ApiObject, region: str) -> EventSource:
    """One mapping with its problem, poller route and Lambda configuration; ``world`` holds
    at least its function and its source (``function_world``)."""
    problem = event_source_problem(world, obj)
    route = _poller_route(world, obj, region) if obj.spec.enabled and problem is None else None
    config = _mapping_configuration(obj, problem, region)
    return EventSource(obj.namespace, obj.name, problem, route, config)


def source_arn(namespace: str, spec: EventSourceMappingSpec, region: str) -> str:
    account = account_for(namespace)
    if spec.source.stream is not None:
        return stream_arn(region, account, spec.source.stream)
    return queue_arn(region, account, spec.source.queue or "")


def _poller_route(world: World, obj: ApiObject, region: str) -> EventSourceRoute:
    spec: EventSourceMappingSpec = obj.spec
    ns = obj.namespace
    queue = stream = None
    if spec.source.queue is not None:
        q: QueueSpec = world.queues[(ns, spec.source.queue)].spec
        redrive = q.redrive_policy
        queue = QueueRoute(
            key=queue_key(ns, spec.source.queue),
            arn=source_arn(ns, spec, region),
            visibility_timeout=float(q.visibility_timeout),
            max_receive_count=redrive.max_receive_count if redrive else None,
            dead_letter_key=queue_key(ns, redrive.dead_letter_queue) if redrive else None,
            fifo=q.fifo,
            retention=q.message_retention_period,
            maximum_concurrency=(
                spec.scaling_config.maximum_concurrency if spec.scaling_config else None
            ),
        )
    else:
        assert spec.source.stream is not None
        s: StreamSpec = world.streams[(ns, spec.source.stream)].spec
        on_failure = spec.destination_config.on_failure if spec.destination_config else None
        target = destination(ns, on_failure, region) if on_failure else None
        stream = StreamRoute(
            key=stream_key(ns, spec.source.stream),
            arn=source_arn(ns, spec, region),
            shards=s.shards,
            retention_hours=s.retention_hours,
            starting_position=spec.starting_position or "LATEST",
            starting_timestamp=(
                starting_timestamp(spec.starting_position_timestamp)
                if spec.starting_position_timestamp
                else None
            ),
            parallelization_factor=spec.parallelization_factor,
            bisect=spec.bisect_batch_on_function_error,
            maximum_retry_attempts=spec.maximum_retry_attempts,
            maximum_record_age=spec.maximum_record_age_in_seconds,
            on_failure=target,
            tumbling_window=spec.tumbling_window_in_seconds,
        )
    return EventSourceRoute(
        namespace=ns,
        name=obj.name,
        function=spec.function_name,
        qualifier=spec.qualifier,
        queue=queue,
        stream=stream,
        batch_size=spec.effective_batch_size,
        batching_window=float(spec.maximum_batching_window_in_seconds),
        report_failures="ReportBatchItemFailures" in spec.function_response_types,
        region=region,
        filters=tuple(f.pattern for f in spec.filter_criteria.filters)
        if spec.filter_criteria
        else (),
        uuid=str(obj.manifest["metadata"].get("uid", "")),
    )


def _mapping_configuration(
    obj: ApiObject, problem: tuple[str, str] | None, region: str
) -> dict[str, Any]:
    """Lambda's EventSourceMappingConfiguration of a mapping."""
    spec: EventSourceMappingSpec = obj.spec
    account = account_for(obj.namespace)
    qualifier = spec.qualifier if spec.qualifier != LATEST else None
    created = str(obj.manifest["metadata"].get("creationTimestamp", ""))
    out: dict[str, Any] = {
        "UUID": str(obj.manifest["metadata"].get("uid", "")),
        "BatchSize": spec.effective_batch_size,
        "MaximumBatchingWindowInSeconds": spec.maximum_batching_window_in_seconds,
        "EventSourceArn": source_arn(obj.namespace, spec, region),
        "FunctionArn": function_arn(region, account, spec.function_name, qualifier),
        "LastModified": _epoch(created),
        "LastProcessingResult": f"PROBLEM: {problem[1]}" if problem else "OK",
        "State": "Enabled" if spec.enabled else "Disabled",
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": list(spec.function_response_types),
    }
    if spec.scaling_config is not None:
        out["ScalingConfig"] = {"MaximumConcurrency": spec.scaling_config.maximum_concurrency}
    if spec.filter_criteria is not None:
        out["FilterCriteria"] = {
            "Filters": [{"Pattern": f.pattern} for f in spec.filter_criteria.filters]
        }
    if spec.source.stream is not None:
        out |= _stream_configuration(obj, spec, region)
    return out


def _stream_configuration(
    obj: ApiObject, spec: EventSourceMappingSpec, region: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "StartingPosition": spec.starting_position,
        "ParallelizationFactor": spec.parallelization_factor,
        "BisectBatchOnFunctionError": spec.bisect_batch_on_function_error,
        "MaximumRetryAttempts": spec.maximum_retry_attempts,
        "MaximumRecordAgeInSeconds": spec.maximum_record_age_in_seconds,
        "TumblingWindowInSeconds": spec.tumbling_window_in_seconds,
        "DestinationConfig": {"OnFailure": {}},
    }
    if spec.starting_position_timestamp:
        out["StartingPositionTimestamp"] = starting_timestamp(spec.starting_position_timestamp)
    failure = spec.destination_config.on_failure if spec.destination_config else None
    if failure is not None:
        target = destination(obj.namespace, failure, region)
        out["DestinationConfig"] = {"OnFailure": {"Destination": target.arn}}
    return out


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def queue_problem(queue: ApiObject, dead_letter: ApiObject | None) -> tuple[Reason, str] | None:
    """Why a Queue cannot work as declared: its redrive policy names a queue that does not
    exist, or one of the other type (SQS: a FIFO queue's dead-letter queue is FIFO, a standard
    queue's standard)."""
    spec: QueueSpec = queue.spec
    redrive = spec.redrive_policy
    if redrive is None:
        return None
    if redrive.dead_letter_queue == queue.name:
        return Reason.INVALID_SOURCE, "a queue cannot be its own dead-letter queue"
    if dead_letter is None:
        return (
            Reason.QUEUE_NOT_FOUND,
            f'dead-letter queue "{redrive.dead_letter_queue}" not found',
        )
    if dead_letter.spec.fifo != spec.fifo:
        kind = "FIFO" if spec.fifo else "standard"
        return (
            Reason.INVALID_SOURCE,
            f"the dead-letter queue of a {kind} queue must be a {kind} queue "
            f'("{redrive.dead_letter_queue}" is not)',
        )
    return None


def intake_of(obj: ApiObject, region: str) -> Intake:
    """What producers of a Queue or Stream need (the gateway's SQS and Kinesis APIs)."""
    account = account_for(obj.namespace)
    if obj.kind == "Queue":
        queue: QueueSpec = obj.spec
        return Intake(
            "Queue",
            obj.namespace,
            obj.name,
            queue_arn(region, account, obj.name),
            queue_key(obj.namespace, obj.name),
            fifo=queue.fifo,
            delay_seconds=queue.delay_seconds,
            content_based_deduplication=queue.content_based_deduplication,
            visibility_timeout=queue.visibility_timeout,
            retention=queue.message_retention_period,
        )
    stream: StreamSpec = obj.spec
    return Intake(
        "Stream",
        obj.namespace,
        obj.name,
        stream_arn(region, account, obj.name),
        stream_key(obj.namespace, obj.name),
        shards=stream.shards,
        retention_hours=stream.retention_hours,
    )
