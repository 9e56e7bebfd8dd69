"""The aiohttp application: paths and methods to operations, errors to ``Status`` answers.

One catch-all handler parses the path (``discovery.py``/``openapi.py`` for discovery,
``routing.py`` for resources) and dispatches on the method; ``reads.py``, ``writes.py``,
``deletes.py`` and ``watch.py`` do the work. The middleware injects faults (``faults.py``),
logs requests, and turns :class:`ApiError` (and unexpected exceptions, which are also kept for
the test to see) into JSON ``Status`` bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from . import deletes, discovery, openapi, protobuf, reads, tokens, watch, writes
from .auth import API_AUDIENCE, UserInfo
from .errors import (
    ApiError,
    bad_request,
    internal,
    method_not_allowed,
    not_acceptable,
    path_not_found,
    unsupported_media_type,
)
from .faults import Faults, RequestRecord
from .params import Query
from .rbac import Attributes, unauthorized
from .routing import Target, resolve
from .settings import Cluster
from .table import to_table, wants_table

CLUSTER = web.AppKey("cluster", Cluster)
FAULTS = web.AppKey("faults", Faults)
SERVER_ERRORS = web.AppKey("server_errors", list[BaseException])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.json_response(
        body, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":"))
    )
    for warning in warnings or []:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = request.app[FAULTS]
    faults.requests.append(
        RequestRecord(
            request.method,
            request.path,
            dict(request.query),
            request.headers.get("Content-Type", ""),
            request.headers.get("Accept", ""),
            request.headers.get("User-Agent", ""),
        )
    )
    try:
        fault = faults.take(request.method, request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            raise fault.error()
        return await handler(request)
    except ApiError as e:
        response = _json(e.status(), e.code)
        response.headers.update(e.headers)
        return response
    except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:  # an unexpected error is a bug of the double: answer 500, keep it
        request.app[SERVER_ERRORS].append(e)
        error = internal(f"{type(e).__name__}: {e}")
        return _json(error.status(), error.code)


def _check_accept(request: web.Request) -> None:
    accept = request.headers.get("Accept", "")
    if accept and not any(t in accept for t in ("json", "*/*", "yaml")):
        raise not_acceptable(["application/json", "application/yaml"])


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    kind = request.content_type
    try:
        if kind in ("application/json", "", "application/octet-stream", "text/plain"):
            return json.loads(raw)
        if kind == "application/yaml":
            return yaml.safe_load(raw.decode())
        if kind == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
    except protobuf.Unsupported as e:
        raise unsupported_media_type(_BODY_TYPES) from e
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the object provided is unrecognized: {e}") from e
    raise unsupported_media_type(_BODY_TYPES)


async def handle(request: web.Request) -> web.StreamResponse:
    cluster = request.app[CLUSTER]
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["openapi"] and request.method == "GET":
        return _openapi(cluster, parts)
    _check_accept(request)
    doc = _discovery(cluster, request, parts)
    if doc is not None:
        return doc
    if parts[:2] == ["api", "v1"]:
        resource_parts = ["", "v1", *parts[2:]]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        resource_parts = parts[1:]
    else:
        raise path_not_found()
    query = Query.parse(request.query)
    if resource_parts[2:3] == ["watch"]:
        resource_parts = resource_parts[:2] + resource_parts[3:]
        query = Query.parse({**request.query, "watch": "true"})
    target = resolve(cluster.registry, resource_parts)
    verb = _verb(request, target, query)
    user = _caller(cluster, request)
    attributes = Attributes(
        verb,
        target.rtype.group,
        target.rtype.plural,
        target.subresource,
        target.namespace,
        target.name,
    )
    if user is not None:
        cluster.authorizer.authorize(user, attributes)

    def owners(body: Any) -> None:
        if user is not None:
            cluster.authorizer.check_owner_references(user, cluster.registry, attributes, body)

    return await _dispatch(request, cluster, target, query, verb, owners)


def _caller(cluster: Cluster, request: web.Request) -> UserInfo | None:
    """The user RBAC applies to: the one a known bearer token maps to (``rbac.py``)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = cluster.tokens.user_of(token.strip()) if scheme.lower() == "bearer" else None
    if user is not None and user.audiences and API_AUDIENCE not in user.audiences:
        raise unauthorized()
    return user


def _openapi(cluster: Cluster, parts: list[str]) -> web.StreamResponse:
    """``/openapi/v3`` and its group-version documents; ``/openapi/v2`` is not served."""
    if parts[:2] != ["openapi", "v3"]:
        raise path_not_found()
    if len(parts) == 2:
        return _json(openapi.root(cluster.registry))
    rest = parts[2:]
    if rest[0] == "api" and len(rest) == 2:
        return _json(openapi.group_version_document(cluster.registry, "", rest[1]))
    if rest[0] == "apis" and len(rest) == 3:
        return _json(openapi.group_version_document(cluster.registry, rest[1], rest[2]))
    raise path_not_found()


def _discovery(
    cluster: Cluster, request: web.Request, parts: list[str]
) -> web.StreamResponse | None:
    registry = cluster.registry
    if request.method != "GET":
        return None
    if parts in (["healthz"], ["livez"], ["readyz"]):
        return web.Response(text="ok")
    if parts == ["version"]:
        return _json(discovery.version(cluster.settings.git_version))
    if parts == ["api"]:
        return _json(discovery.api_versions(request.host))
    if parts == ["apis"]:
        return _json(discovery.api_group_list(registry))
    if parts == ["api", "v1"]:
        return _json(discovery.api_resource_list(registry, "", "v1"))
    if len(parts) == 2 and parts[0] == "apis":
        return _json(discovery.api_group(registry, parts[1]))
    if len(parts) == 3 and parts[0] == "apis":
        return _json(discovery.api_resource_list(registry, parts[1], parts[2]))
    return None


def _verb(request: web.Request, target: Target, query: Query) -> str:
    method, named = request.method, bool(target.name)
    verbs = {
        ("GET", True): "get",
        ("GET", False): "watch" if query.watch else "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }
    verb = verbs.get((method, named))
    if target.subresource == "token":
        verb = "create" if method == "POST" else None
    if verb is None or (verb not in target.rtype.verbs and not target.subresource):
        raise method_not_allowed()
    return verb


async def _dispatch(
    request: web.Request,
    cluster: Cluster,
    target: Target,
    query: Query,
    verb: str,
    owners: Callable[[Any], None],
) -> web.StreamResponse:
    """``owners`` checks the ownerReferences a write sets (``rbac.py``)."""
    accept = request.headers.get("Accept", "")
    if verb == "watch":
        return await watch.serve(request, cluster, target, query, wants_table(accept))
    if verb == "get":
        obj = reads.get(cluster, target)
        if wants_table(accept):
            return _json(
                to_table(
                    target.rtype,
                    [obj],
                    {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    query.include_object,
                    cluster.clock,
                )
            )
        return _json(obj)
    if verb == "list":
        listing = reads.list_objects(cluster, target, query)
        if wants_table(accept):
            items = [
                {"apiVersion": target.rtype.api_version, "kind": target.rtype.kind, **o}
                for o in listing["items"]
            ]
            return _json(
                to_table(
                    target.rtype, items, listing["metadata"], query.include_object, cluster.clock
                )
            )
        return _json(listing)
    if verb == "patch":
        raw = await request.read()
        owners(_loaded(raw))
        status, body, warnings = writes.patch(cluster, target, raw, request.content_type, query)
    elif verb in ("delete", "deletecollection"):
        options = deletes.check_delete_body(await _body(request))
        run = deletes.delete if verb == "delete" else deletes.delete_collection
        status, body, warnings = run(cluster, target, options, query)
    else:
        body_in = await _body(request)
        owners(body_in)
        if target.subresource == "token":
            operation = tokens.create_token
        elif target.rtype.create_only:
            operation = tokens.token_review
        else:
            operation = writes.create if verb == "create" else writes.update
        status, body, warnings = operation(cluster, target, body_in, query)
    cluster.changed.set()
    return _json(body, status, warnings)


def _loaded(raw: bytes) -> Any:
    """A patch body as an object, when it is one (JSON or YAML); else ``None``."""
    try:
        return yaml.safe_load(raw.decode())
    except (ValueError, yaml.YAMLError):
        return None


def make_app(
    cluster: Cluster, faults: Faults, server_errors: list[BaseException]
) -> web.Application:
    app = web.Application(middlewares=[_middleware], client_max_size=64 * 1024 * 1024)
    app[CLUSTER] = cluster
    app[FAULTS] = faults
    app[SERVER_ERRORS] = server_errors
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
