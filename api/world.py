"""The declared world and what follows from it (pure): aliases, reservations, routes.

Shared by the controller (which also acts on it) and the gateway on Kubernetes (which only
routes by it): both read the same objects and must agree on where an invocation goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from klambda.api import aliases as aliases_mod
from klambda.api import publishing
from klambda.api.arn import account_for, function_arn
from klambda.api.async_settings import function_async_settings
from klambda.api.configuration import function_configuration, revision_id
from klambda.api.objects import ApiObject, FunctionKey
from klambda.api.policy import parse_policy
from klambda.api.reasons import Reason
from klambda.api.routes import (
    LATEST,
    AliasRoute,
    FunctionRoute,
    VersionTarget,
    url_id,
)
from klambda.api.types import (
    AliasSpec,
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
    """Decoded Secret data, where the store holds Secrets (locally; the operator does not)."""
    event_sources: list[ApiObject] = field(default_factory=list)
    """EventSourceMapping objects."""
    queues: dict[tuple[str, str], ApiObject] = field(default_factory=dict)
    """Queue objects (those the mappings read, at least)."""
    streams: dict[tuple[str, str], ApiObject] = field(default_factory=dict)
    """Stream objects (those the mappings read, at least)."""
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
        sources: Iterable[ApiObject] = (),
    ) -> World:
        """``sources``: Queue and Stream objects."""
        sources = list(sources)
        return cls(
            {(o.namespace, o.name): o for o in functions},
            _group(versions),
            _group(aliases),
            {(o.namespace, o.name): o.spec for o in config_maps},
            {(o.namespace, o.name): o.spec for o in secrets},
            list(event_sources),
            {(o.namespace, o.name): o for o in sources if o.kind == "Queue"},
            {(o.namespace, o.name): o for o in sources if o.kind == "Stream"},
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


class Objects(Protocol):
    """Where a World is read from: the local store, or an informer cache."""

    def find(self, kind: str, namespace: str, name: str) -> ApiObject | None: ...

    def parts(self, kind: str, function: FunctionKey) -> list[ApiObject]: ...

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]: ...


def function_world(objects: Objects, key: FunctionKey, data: bool = True) -> World:
    """The objects one function's reconcile (or route) reads, and no other function's: the
    function, its Versions, Aliases and EventSourceMappings with the Queues and Streams they
    read, and (``data``) its namespace's ConfigMaps and Secrets, which code and environment
    may name."""
    namespace = key[0]
    fn = objects.find("Function", *key)
    mappings = objects.parts("EventSourceMapping", key)
    return World.of(
        [fn] if fn is not None else [],
        objects.parts("Version", key),
        objects.parts("Alias", key),
        objects.list("ConfigMap", namespace) if data else (),
        objects.list("Secret", namespace) if data else (),
        mappings,
        sources_of(objects, mappings),
    )


def sources_of(objects: Objects, mappings: Iterable[ApiObject]) -> list[ApiObject]:
    """The Queue and Stream objects ``mappings`` read (those that exist)."""
    out = []
    for m in mappings:
        kind, name = source_of(m)
        found = objects.find(kind, m.namespace, name)
        if found is not None:
            out.append(found)
    return out


def source_of(mapping: ApiObject) -> tuple[str, str]:
    """(kind, name) of what an EventSourceMapping reads: ("Queue", q) or ("Stream", s)."""
    source = mapping.spec.source
    return ("Stream", source.stream) if source.stream is not None else ("Queue", source.queue)


def _group(objects: Iterable[ApiObject]) -> dict[tuple[str, str], list[ApiObject]]:
    out: dict[tuple[str, str], list[ApiObject]] = {}
    for obj in objects:
        out.setdefault((obj.namespace, obj.spec.function_name), []).append(obj)
    return out


def plan_function(
    world: World, key: FunctionKey, granted: int | None, max_per_version: int
) -> aliases_mod.FunctionPlan:
    """One function's aliases and provisioned concurrency; ``granted``: its honoured
    reservation (``aliases.Reservations`` decides among all functions)."""
    return aliases_mod.plan_function(
        key in world.functions,
        world.numbered(key),
        world.aliases.get(key, []),
        granted,
        max_per_version,
    )


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
    async_settings, _ = function_async_settings(
        fn, world.numbered(key), world.aliases.get(key, []), ctx.region
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
        async_settings,
    )
