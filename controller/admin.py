"""The local platform's admin API: what ``klambda apply/get/delete`` talk to.

A small stand-in for the Kubernetes API server: apply (validated against the same schema the
CRDs carry), list, get and delete objects. Loopback only, bearer-token protected.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from klambda.controller.api.objects import parse_object
from klambda.controller.api.schema import ValidationError
from klambda.controller.api.types import KINDS
from klambda.controller.store import NotFound, ObjectStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KIND_NAMES: dict[str, str] = {"configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap"}
for _k in KINDS.values():
    for _alias in (_k.kind.lower(), _k.plural, _k.singular, *_k.short_names):
        KIND_NAMES[_alias] = _k.kind


def kind_of(name: str) -> str | None:
    return KIND_NAMES.get(name.lower())


def _status(code: int, reason: str, message: str, **extra: Any) -> web.Response:
    """A Kubernetes-style Status object."""
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message, "code": code}
    body.update(extra)
    return web.json_response(body, status=code)


def create_admin_app(store: ObjectStore, token: str) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _status(401, "Unauthorized", "a valid admin token is required")
        return await handler(request)

    async def apply(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            docs = body["objects"]
            assert isinstance(docs, list)
        except (ValueError, KeyError, AssertionError):
            return _status(400, "BadRequest", 'expected {"objects": [...]}')
        parsed, errors = [], []
        for doc in docs:
            try:
                parsed.append(parse_object(doc))
            except ValidationError as e:
                errors.append(
                    {
                        "subject": e.subject,
                        "causes": [{"field": x.path, "message": x.message} for x in e.errors],
                        "message": str(e),
                    }
                )
        if errors:
            return _status(422, "Invalid", "; ".join(e["message"] for e in errors), errors=errors)
        results = []
        for obj in parsed:
            stored, outcome = await store.apply(obj)
            results.append(
                {"kind": stored.kind, "namespace": stored.namespace, "name": stored.name,
                 "result": outcome}
            )
        return web.json_response({"results": results})

    def _kind(request: web.Request) -> str:
        kind = kind_of(request.match_info["kind"])
        if kind is None:
            raise web.HTTPNotFound(
                text=f"unknown resource type {request.match_info['kind']!r}",
            )
        return kind

    async def list_objects(request: web.Request) -> web.Response:
        kind = _kind(request)
        namespace = request.query.get("namespace") or None
        return web.json_response({"items": [o.to_dict() for o in store.list(kind, namespace)]})

    async def get_object(request: web.Request) -> web.Response:
        kind = _kind(request)
        try:
            obj = store.get(kind, request.match_info["namespace"], request.match_info["name"])
        except NotFound as e:
            return _status(404, "NotFound", str(e.args[0]))
        return web.json_response(obj.to_dict())

    async def delete_object(request: web.Request) -> web.Response:
        kind = _kind(request)
        try:
            obj = await store.delete(kind, request.match_info["namespace"], request.match_info["name"])
        except NotFound as e:
            return _status(404, "NotFound", str(e.args[0]))
        return web.json_response(obj.to_dict())

    app = web.Application(middlewares=[auth], client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/apply", apply)
    app.router.add_get("/v1/objects/{kind}", list_objects)
    app.router.add_get("/v1/objects/{kind}/{namespace}/{name}", get_object)
    app.router.add_delete("/v1/objects/{kind}/{namespace}/{name}", delete_object)
    return app
