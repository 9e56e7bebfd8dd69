"""The local platform's admin API: what ``klambda apply/get/delete`` talk to.

A small stand-in for the Kubernetes API server: apply (validated against the same schema the
CRDs carry), list, get and delete objects. Loopback only, bearer-token protected.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from klambda.api import publishing
from klambda.api.objects import ApiObject, describe, parse_object
from klambda.api.schema import ValidationError
from klambda.api.types import API_VERSION, kind_named, name_problems
from klambda.controller.platform.iam_local import FileDirectory, IamError
from klambda.controller.reconcile import latest_shim
from klambda.controller.store import NotFound, ObjectStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _status(code: int, reason: str, message: str, **extra: Any) -> web.Response:
    """A Kubernetes-style Status object."""
    body = {
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    body.update(extra)
    return web.json_response(body, status=code)


class AdminApi:
    """Handlers over one store; ``create_admin_app`` mounts them."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def apply(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            docs = body["objects"]
        except (ValueError, KeyError, TypeError):
            docs = None
        if not isinstance(docs, list):
            return _status(400, "BadRequest", 'expected {"objects": [...]}')
        parsed: list[ApiObject] = []
        errors: list[dict[str, Any]] = []
        for doc in docs:
            try:
                obj = parse_object(doc)
                refused = self.store.check_update(obj)
                if refused:
                    raise ValidationError(refused, describe(doc))
                parsed.append(obj)
            except ValidationError as e:
                causes = [{"field": x.path, "message": x.message} for x in e.errors]
                errors.append({"subject": e.subject, "causes": causes, "message": str(e)})
        if errors:
            return _status(422, "Invalid", "; ".join(e["message"] for e in errors), errors=errors)
        results = []
        for obj in parsed:
            stored, outcome = await self.store.apply(obj)
            results.append(
                {
                    "kind": stored.kind,
                    "namespace": stored.namespace,
                    "name": stored.name,
                    "result": outcome,
                }
            )
        return web.json_response({"results": results})

    async def list(self, request: web.Request) -> web.Response:
        kind = _kind(request)
        namespace = request.query.get("namespace") or None
        items = [o.to_dict() for o in self.store.list(kind, namespace)]
        return web.json_response({"items": items})

    async def get(self, request: web.Request) -> web.Response:
        kind = _kind(request)
        try:
            obj = self.store.get(kind, request.match_info["namespace"], request.match_info["name"])
        except NotFound as e:
            return _status(404, "NotFound", str(e.args[0]))
        return web.json_response(obj.to_dict())

    async def delete(self, request: web.Request) -> web.Response:
        kind = _kind(request)
        info = request.match_info
        try:
            obj = await self.store.delete(kind, info["namespace"], info["name"])
        except NotFound as e:
            return _status(404, "NotFound", str(e.args[0]))
        return web.json_response(obj.to_dict())

    async def publish(self, request: web.Request) -> web.Response:
        """PublishVersion: a new Version object, or the latest one when nothing changed."""
        try:
            body = await request.json()
            namespace, name = body["namespace"], body["function"]
            description = str(body.get("description") or "")
        except (ValueError, KeyError, TypeError):
            return _status(400, "BadRequest", 'expected {"namespace", "function", "description"}')
        try:
            fn = self.store.get("Function", namespace, name)
        except NotFound as e:
            return _status(404, "NotFound", str(e.args[0]))
        maps = {o.name: o.spec for o in self.store.list("ConfigMap", namespace)}
        secrets = {o.name: o.spec for o in self.store.list("Secret", namespace)}
        config_hash = latest_shim(fn, maps, secrets).config_hash
        ready = [c for c in fn.status.get("conditions", []) if c.get("type") == "Ready"]
        sha = fn.status.get("codeSha256", "")
        current = (
            ready
            and ready[0].get("status") == "True"
            and (ready[0].get("observedGeneration") == fn.generation)
        )
        if not current or not sha:
            return _status(409, "Conflict", f'function "{name}" is being updated; try again')
        versions = [
            v for v in self.store.list("Version", namespace) if v.spec.function_name == name
        ]
        current_snapshot = publishing.snapshot(fn.spec, sha, config_hash)
        unchanged = publishing.unchanged_since(
            publishing.latest_numbered(versions), current_snapshot
        )
        if unchanged is not None:
            return web.json_response({"version": unchanged, "created": False})
        obj = parse_object(
            {
                "apiVersion": API_VERSION,
                "kind": "Version",
                "metadata": {
                    "name": self._version_name(namespace, name, fn),
                    "namespace": namespace,
                },
                "spec": {"functionName": name, "description": description, "codeSha256": sha},
            }
        )
        stored, _ = await self.store.apply(obj)
        number = await self._numbered(stored)
        if number is None:
            reason = stored.status.get("conditions", [{}])[0].get("message", "not published")
            return _status(409, "Conflict", f"version not published: {reason}")
        return web.json_response({"version": number, "created": True, "name": stored.name})

    def _version_name(self, namespace: str, name: str, fn: ApiObject) -> str:
        n = int(fn.status.get("lastVersion", 0)) + 1
        while True:
            candidate = f"{name}-v{n}"
            try:
                self.store.get("Version", namespace, candidate)
            except NotFound:
                return candidate
            n += 1

    async def _numbered(self, obj: ApiObject, timeout: float = 30.0) -> str | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            number = obj.status.get("version")
            cond = obj.status.get("conditions", [{}])[0]
            if number:
                return str(number)
            if cond.get("status") == "False":
                return None
            await asyncio.sleep(0.05)
        return None


def _kind(request: web.Request) -> str:
    kind = kind_named(request.match_info["kind"])
    if kind is None:
        raise web.HTTPNotFound(text=f"unknown resource type {request.match_info['kind']!r}")
    return kind


class KeysApi:
    """Principals' access keys (local platform): list, create, delete."""

    def __init__(self, directory: FileDirectory) -> None:
        self.directory = directory

    async def list(self, request: web.Request) -> web.Response:
        items = [
            {
                "accessKeyId": k.access_key_id,
                "principal": p.name,
                "namespace": p.namespace,
                "arn": p.arn,
                "created": k.created,
            }
            for k, p in self.directory.access_keys()
        ]
        return web.json_response(
            {"items": sorted(items, key=lambda i: (i["namespace"], i["principal"]))}
        )

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, namespace = str(body["name"]), str(body.get("namespace") or "default")
            policy = body.get("policy")
        except (ValueError, KeyError, TypeError):
            return _status(400, "BadRequest", 'expected {"name", "namespace", "policy"}')
        problems = name_problems(name)
        if problems:
            return _status(422, "Invalid", f"name: {problems[0]}")
        try:
            key = self.directory.create_key(name, namespace, policy)
        except IamError as e:
            return _status(422, "Invalid", str(e))
        found = self.directory.lookup(key.access_key_id)
        assert found is not None
        return web.json_response(
            {
                "accessKeyId": key.access_key_id,
                "secretAccessKey": key.secret_access_key,
                "arn": found[1].arn,
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        try:
            key = self.directory.delete_key(request.match_info["key"])
        except IamError as e:
            return _status(404, "NotFound", str(e))
        return web.json_response({"accessKeyId": key.access_key_id})


def create_admin_app(
    store: ObjectStore, token: str, directory: FileDirectory | None = None
) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _status(401, "Unauthorized", "a valid admin token is required")
        return await handler(request)

    api = AdminApi(store)
    app = web.Application(middlewares=[auth], client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/apply", api.apply)
    app.router.add_post("/v1/publish", api.publish)
    app.router.add_get("/v1/objects/{kind}", api.list)
    app.router.add_get("/v1/objects/{kind}/{namespace}/{name}", api.get)
    app.router.add_delete("/v1/objects/{kind}/{namespace}/{name}", api.delete)
    if directory is not None:
        keys = KeysApi(directory)
        app.router.add_get("/v1/keys", keys.list)
        app.router.add_post("/v1/keys", keys.create)
        app.router.add_delete("/v1/keys/{key}", keys.delete)
    return app
