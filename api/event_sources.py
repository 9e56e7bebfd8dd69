"""Event source mappings as the world declares them (pure): whether each can deliver, its
poller's route and its Lambda EventSourceMappingConfiguration.

A mapping's problem depends on its function's versions and aliases (which qualifier it names,
their timeouts against the queue's visibility timeout), so it is decided from a ``World``
holding that function (``world.function_world``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from klambda.api import publishing
from klambda.api.arn import account_for, function_arn, queue_arn
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import LATEST, EventSource, EventSourceRoute, queue_key
from klambda.api.types import DEFAULT_BATCHES_IN_FLIGHT, AliasSpec, EventSourceMappingSpec
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
    visibility, timeout = spec.queue.visibility_timeout, max(timeouts)
    if visibility < timeout:  # Lambda's rule, and its words
        return (
            Reason.QUEUE_VISIBILITY_TIMEOUT_TOO_SHORT,
            f"Queue visibility timeout: {visibility} seconds is less than Function timeout: "
            f"{timeout} seconds",
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
    at least its function (``function_world``)."""
    problem = event_source_problem(world, obj)
    route = _poller_route(obj, region) if obj.spec.enabled and problem is None else None
    config = _mapping_configuration(obj, problem, region)
    return EventSource(obj.namespace, obj.name, problem, route, config)


def _poller_route(obj: ApiObject, region: str) -> EventSourceRoute:
    spec: EventSourceMappingSpec = obj.spec
    q = spec.queue
    return EventSourceRoute(
        namespace=obj.namespace,
        name=obj.name,
        function=spec.function_name,
        qualifier=spec.qualifier,
        queue_key=queue_key(obj.namespace, q.name),
        queue_arn=queue_arn(region, account_for(obj.namespace), q.name),
        batch_size=spec.batch_size,
        batching_window=float(spec.maximum_batching_window_in_seconds),
        visibility_timeout=float(q.visibility_timeout),
        max_receive_count=q.max_receive_count,
        dead_letter_key=(
            queue_key(obj.namespace, q.dead_letter_queue) if q.dead_letter_queue else None
        ),
        report_failures="ReportBatchItemFailures" in spec.function_response_types,
        region=region,
        concurrency=(
            spec.scaling_config.maximum_concurrency
            if spec.scaling_config
            else DEFAULT_BATCHES_IN_FLIGHT
        ),
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
        "BatchSize": spec.batch_size,
        "MaximumBatchingWindowInSeconds": spec.maximum_batching_window_in_seconds,
        "EventSourceArn": queue_arn(region, account, spec.queue.name),
        "FunctionArn": function_arn(region, account, spec.function_name, qualifier),
        "LastModified": _epoch(created),
        "LastProcessingResult": f"PROBLEM: {problem[1]}" if problem else "OK",
        "State": "Enabled" if spec.enabled else "Disabled",
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": list(spec.function_response_types),
    }
    if spec.scaling_config is not None:
        out["ScalingConfig"] = {"MaximumConcurrency": spec.scaling_config.maximum_concurrency}
    return out


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
