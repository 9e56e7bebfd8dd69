"""The declared world and what follows from it (pure): aliases, reservations, routes.

Shared by the controller (which also acts on it) and the gateway on Kubernetes (which only
routes by it): both read the same objects and must agree on where an invocation goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from klambda.api import aliases as aliases_mod
from klambda.api import publishing
from klambda.api.arn import account_for, function_arn, queue_arn
from klambda.api.configuration import function_configuration, revision_id
from klambda.api.objects import ApiObject
from klambda.api.policy import parse_policy
from klambda.api.reasons import Reason
from klambda.api.routes import (
    LATEST,
    AliasRoute,
    EventSource,
    EventSourceRoute,
    FunctionRoute,
    VersionTarget,
    queue_key,
    url_id,
)
from klambda.api.types import (
    DEFAULT_BATCHES_IN_FLIGHT,
    AliasSpec,
    EventSourceMappingSpec,
    FunctionSpec,
)

ShimKey = tuple[str, str, str]


@dataclass
class World:
    """Everything one pass reads, grouped by function."""

    functions: dict[tuple[str, str], ApiObject]
    versions: dict[tuple[str, str], list[ApiObject]]
    aliases: dict[tuple[str, str], list[ApiObject]]
    config_maps: dict[tuple[str, str], dict[str, str]]
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    event_sources: list[ApiObject] = field(default_factory=list)
    """EventSourceMapping objects."""
    """Decoded Secret data, where the store holds Secrets (locally; the operator does not)."""
    _indexes: dict[str, dict[str, dict[str, dict[str, str]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def of(
        cls,
        functions: Iterable[ApiObject],
        versions: Iterable[ApiObject],
        aliases: Iterable[ApiObject],
        config_maps: Iterable[ApiObject],
        secrets: Iterable[ApiObject] = (),
        event_sources: Iterable[ApiObject] = (),
    ) -> World:
        return cls(
            {(o.namespace, o.name): o for o in functions},
            _group(versions),
            _group(aliases),
            {(o.namespace, o.name): o.spec for o in config_maps},
            {(o.namespace, o.name): o.spec for o in secrets},
            list(event_sources),
        )

    def maps_in(self, namespace: str) -> dict[str, dict[str, str]]:
        return self._by_namespace("config_maps").get(namespace, {})

    def secrets_in(self, namespace: str) -> dict[str, dict[str, str]]:
        return self._by_namespace("secrets").get(namespace, {})

    def _by_namespace(self, attribute: str) -> dict[str, dict[str, dict[str, str]]]:
        """An index built once per World (one pass), not a scan of every map per function."""
        if attribute not in self._indexes:
            out: dict[str, dict[str, dict[str, str]]] = {}
            for (ns, name), data in getattr(self, attribute).items():
                out.setdefault(ns, {})[name] = data
            self._indexes[attribute] = out
        return self._indexes[attribute]

    def numbered(self, key: tuple[str, str]) -> dict[str, ApiObject]:
        """Version objects by number (the first object to get each number)."""
        out: dict[str, ApiObject] = {}
        for obj in sorted(self.versions.get(key, []), key=lambda o: o.creation_key):
            number = obj.status.get("version")
            if number and number not in out:
                out[number] = obj
        return out


def _group(objects: Iterable[ApiObject]) -> dict[tuple[str, str], list[ApiObject]]:
    out: dict[tuple[str, str], list[ApiObject]] = {}
    for obj in objects:
        out.setdefault((obj.namespace, obj.spec.function_name), []).append(obj)
    return out


@dataclass
class Plans:
    """Aliases and provisioned concurrency per function, and the reservations honoured."""

    functions: dict[tuple[str, str], aliases_mod.FunctionPlan] = field(default_factory=dict)
    granted: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)


def plan(world: World, concurrency_limit: int, max_per_version: int) -> Plans:
    granted, refused = aliases_mod.honoured_reservations(
        {k: fn.spec.reserved_concurrency for k, fn in world.functions.items()},
        sorted(world.functions, key=lambda k: world.functions[k].creation_key),
        concurrency_limit,
    )
    functions = {
        key: aliases_mod.plan_function(
            key in world.functions,
            world.numbered(key),
            world.aliases.get(key, []),
            granted.get(key),
            max_per_version,
        )
        for key in set(world.functions) | set(world.aliases)
    }
    return Plans(functions, granted, refused)


@dataclass(frozen=True)
class Runtime:
    """What a platform (or the gateway's watch of it) knows of one version's environments."""

    endpoints: tuple[str, ...] = ()
    problem: tuple[Reason, str] | None = None
    """(Reason, message) why the version cannot run."""
    code_sha256: str = ""
    code_size: int = 0


@dataclass(frozen=True)
class RouteContext:
    region: str
    gateway_url: str
    default_namespace: str = "default"

    def url_of(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        uid = url_id(name, qualifier, namespace, self.default_namespace)
        return f"{self.gateway_url}/lambda-url/{uid}/"


def _target(
    version: str, spec: FunctionSpec, runtime: Runtime, configuration: dict[str, Any]
) -> VersionTarget:
    timeout = float(spec.timeout)
    if runtime.endpoints or runtime.problem is None:
        return VersionTarget(
            version,
            runtime.endpoints,
            timeout,
            activatable=not runtime.endpoints,
            configuration=configuration,
        )
    reason, message = runtime.problem
    problem_type = reason.lambda_error
    return VersionTarget(
        version, (), timeout, f"{reason}: {message}", problem_type, False, configuration
    )


def _configuration(
    ctx: RouteContext,
    fn: ApiObject,
    spec: FunctionSpec,
    version: str,
    obj: ApiObject | None,
    runtime: Runtime,
) -> dict[str, Any]:
    status = obj.status if obj is not None else fn.status
    return function_configuration(
        namespace=fn.namespace,
        name=fn.name,
        region=ctx.region,
        spec=spec,
        version=version,
        description=obj.spec.description if obj is not None else spec.description,
        code_sha256=status.get("codeSha256", "") or runtime.code_sha256,
        code_size=runtime.code_size,
        last_modified=(
            obj.manifest["metadata"].get("creationTimestamp", "")
            if obj
            else fn.status.get("lastModified", "")
        ),
        state=fn.status.get("state", "Pending") if obj is None else "Active",
        qualified=obj is not None,
    )


def build_route(
    ctx: RouteContext,
    world: World,
    fn: ApiObject,
    function_plan: aliases_mod.FunctionPlan,
    reserved: int | None,
    runtime: Callable[[ShimKey], Runtime],
) -> FunctionRoute:
    """The gateway's record of one function: versions, aliases, URL, limits, policy."""
    key = (fn.namespace, fn.name)
    latest = runtime((*key, LATEST))
    versions = {
        LATEST: _target(
            LATEST, fn.spec, latest, _configuration(ctx, fn, fn.spec, LATEST, None, latest)
        )
    }
    for number, obj in world.numbered(key).items():
        spec = publishing.spec_of(obj.status)
        rt = runtime((*key, number))
        versions[number] = _target(number, spec, rt, _configuration(ctx, fn, spec, number, obj, rt))
    alias_routes = {}
    for a in function_plan.aliases:
        if a.problem is None:
            aspec: AliasSpec = a.obj.spec
            alias_routes[a.name] = AliasRoute(
                a.name,
                a.primary,
                a.weights,
                aspec.url,
                aspec.description,
                revision_id(a.obj.resource_version, a.name),
                ctx.url_of(*key, a.name) if aspec.url else "",
            )
    return FunctionRoute(
        fn.namespace,
        fn.name,
        function_arn(ctx.region, account_for(fn.namespace), fn.name),
        fn.spec.url,
        versions,
        alias_routes,
        reserved,
        parse_policy(fn.spec.policy, resource_policy=True) if fn.spec.policy else None,
        fn.spec.policy,
        account_for(fn.namespace),
        ctx.url_of(*key) if fn.spec.url else "",
        str(fn.manifest["metadata"].get("creationTimestamp", "")),
    )


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
    out = []
    for obj in sorted(world.event_sources, key=lambda o: (o.namespace, o.name)):
        problem = event_source_problem(world, obj)
        route = _poller_route(obj, region) if obj.spec.enabled and problem is None else None
        config = _mapping_configuration(obj, problem, region)
        out.append(EventSource(obj.namespace, obj.name, problem, route, config))
    return out


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
