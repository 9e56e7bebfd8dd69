"""The read-only part of Lambda's control plane that the AWS CLI and SDK users reach for:
GetFunction, GetFunctionConfiguration, ListFunctions, ListVersionsByFunction, ListAliases,
GetAlias, GetFunctionUrlConfig, GetFunctionConcurrency, GetPolicy, GetAccountSettings,
ListEventSourceMappings, GetEventSourceMapping.

Functions are managed with manifests (``kubectl apply`` / ``klambda apply``); write operations
answer with a clear error saying so. Every call is SigV4-authenticated and authorized.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from klambda.api.arn import InvalidFunctionName, parse_function_name
from klambda.api.configuration import lambda_time
from klambda.api.routes import LATEST, AliasRoute, FunctionRoute
from klambda.gateway.auth import Authenticator, Identity, authorize, context_keys
from klambda.gateway.errors import (
    InvalidParameterValue,
    LambdaError,
    ResourceNotFound,
    error_response,
)
from klambda.gateway.invoking import Invoker
from klambda.gateway.settings import GatewaySettings


class UnsupportedOperation(LambdaError):
    status = 400
    error_type = "InvalidParameterValueException"


def _page(items: list[dict[str, Any]], request: web.Request, key: str) -> dict[str, Any]:
    try:
        start = int(request.query.get("Marker") or 0)
        size = int(request.query.get("MaxItems") or 50)
    except ValueError:
        raise InvalidParameterValue("Marker and MaxItems must be numbers") from None
    if not 1 <= size <= 10000:
        raise InvalidParameterValue("MaxItems must be between 1 and 10000")
    page = items[start : start + size]
    out: dict[str, Any] = {key: page}
    if start + size < len(items):
        out["NextMarker"] = str(start + size)
    return out


def _function_of(arn: str) -> str:
    """The function name in a function ARN (qualified or not)."""
    return arn.split(":function:", 1)[1].split(":", 1)[0]


def alias_configuration(route: FunctionRoute, alias: AliasRoute) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": f"{route.arn}:{alias.name}",
        "Name": alias.name,
        "FunctionVersion": alias.primary,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        out["RoutingConfig"] = {"AdditionalVersionWeights": alias.weights}
    return out


class ControlPlane:
    def __init__(
        self, invoker: Invoker, settings: GatewaySettings, authenticator: Authenticator
    ) -> None:
        self.invoker = invoker
        self.settings = settings
        self.authenticator = authenticator

    def mount(self, app: web.Application) -> None:
        r = app.router
        for path in ("/2015-03-31/functions", "/2015-03-31/functions/"):
            r.add_get(path, self._wrap(self.list_functions))
        r.add_get("/2015-03-31/functions/{name}", self._wrap(self.get_function))
        r.add_get("/2015-03-31/functions/{name}/configuration", self._wrap(self.get_configuration))
        r.add_get("/2015-03-31/functions/{name}/versions", self._wrap(self.list_versions))
        r.add_get("/2015-03-31/functions/{name}/aliases", self._wrap(self.list_aliases))
        r.add_get("/2015-03-31/functions/{name}/aliases/{alias}", self._wrap(self.get_alias))
        r.add_get("/2015-03-31/functions/{name}/policy", self._wrap(self.get_policy))
        r.add_get("/2021-10-31/functions/{name}/url", self._wrap(self.get_url_config))
        r.add_get("/2019-09-30/functions/{name}/concurrency", self._wrap(self.get_concurrency))
        invoke_config = "/2019-09-25/functions/{name}/event-invoke-config"
        r.add_get(invoke_config, self._wrap(self.get_event_invoke_config))
        r.add_get(invoke_config + "/list", self._wrap(self.list_event_invoke_configs))
        for path in ("/2015-03-31/event-source-mappings", "/2015-03-31/event-source-mappings/"):
            r.add_get(path, self._wrap(self.list_event_source_mappings))
        r.add_get(
            "/2015-03-31/event-source-mappings/{uuid}", self._wrap(self.get_event_source_mapping)
        )
        for path in ("/2016-08-19/account-settings", "/2016-08-19/account-settings/"):
            r.add_get(path, self._wrap(self.account_settings))
        for prefix in (
            "/2015-03-31/",
            "/2021-10-31/",
            "/2019-09-30/",
            "/2017-10-31/",
            "/2016-08-19/",
            "/2019-09-25/",
            "/2020-04-22/",
        ):
            r.add_route("*", prefix + "{tail:.*}", self._wrap(self.unsupported))

    def _wrap(self, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            request_id = self.invoker.new_request_id()
            try:
                identity = await self.authenticator.authenticate(request, await request.read())
                body = await handler(request, identity)
            except LambdaError as e:
                return error_response(e, request_id)
            return web.json_response(
                body, headers={"x-amzn-RequestId": request_id}, dumps=json.dumps
            )

        return wrapped

    # ------------------------------------------------------------------ helpers

    def _function(
        self, request: web.Request, identity: Identity, action: str
    ) -> tuple[FunctionRoute, str | None]:
        try:
            ref = parse_function_name(
                request.match_info["name"], request.query.get("Qualifier") or None
            )
        except InvalidFunctionName as e:
            raise InvalidParameterValue(str(e)) from e
        route = self.invoker.authorized_route(
            ref, identity, action, context_keys(request, identity)
        )
        return route, ref.qualifier

    def _version_config(self, route: FunctionRoute, qualifier: str | None) -> dict[str, Any]:
        version = qualifier or LATEST
        if version in route.aliases:
            version = route.aliases[version].primary
        target = route.versions.get(version)
        if target is None:
            raise self.invoker._not_found(route.namespace, route.name, qualifier)
        return target.configuration

    # ------------------------------------------------------------------ operations

    async def list_functions(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        namespace = identity.principal.namespace
        authorize(
            identity,
            "lambda:ListFunctions",
            "*",
            identity.principal.account,
            None,
            context_keys(request, identity),
            identity.principal.namespace,
        )
        routes = sorted(
            (r for r in self.invoker.table.routes() if r.namespace == namespace),
            key=lambda r: r.name,
        )
        every = request.query.get("FunctionVersion") == "ALL"
        items = []
        for r in routes:
            versions = r.versions.values() if every else [r.versions[LATEST]]
            items += [v.configuration for v in versions]
        return _page(items, request, "Functions")

    async def get_function(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, qualifier = self._function(request, identity, "lambda:GetFunction")
        out: dict[str, Any] = {
            "Configuration": self._version_config(route, qualifier),
            "Code": {"RepositoryType": "klambda", "Location": ""},
            "Tags": {},
        }
        if route.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": route.reserved_concurrency}
        return out

    async def get_configuration(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, qualifier = self._function(request, identity, "lambda:GetFunctionConfiguration")
        return self._version_config(route, qualifier)

    async def list_versions(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:ListVersionsByFunction")
        ordered = sorted(route.versions, key=lambda v: -1 if v == LATEST else int(v))
        items = []
        for version in ordered:
            config = dict(route.versions[version].configuration)
            if version == LATEST:
                config["FunctionArn"] = f"{route.arn}:{LATEST}"
            items.append(config)
        return _page(items, request, "Versions")

    async def list_aliases(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:ListAliases")
        wanted = request.query.get("FunctionVersion")
        aliases = [
            alias_configuration(route, a)
            for _, a in sorted(route.aliases.items())
            if wanted is None or a.primary == wanted or wanted in a.weights
        ]
        return _page(aliases, request, "Aliases")

    async def get_alias(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:GetAlias")
        alias = route.aliases.get(request.match_info["alias"])
        if alias is None:
            raise ResourceNotFound(f"Alias not found: {route.arn}:{request.match_info['alias']}")
        return alias_configuration(route, alias)

    async def get_url_config(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, qualifier = self._function(request, identity, "lambda:GetFunctionUrlConfig")
        alias = route.aliases.get(qualifier) if qualifier else None
        url = route.url if qualifier is None else alias.url if alias else None
        address = route.url_address if qualifier is None else alias.url_address if alias else ""
        if url is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        out: dict[str, Any] = {
            "FunctionUrl": address,
            "FunctionArn": f"{route.arn}:{qualifier}" if qualifier else route.arn,
            "AuthType": url.auth_type,
            "InvokeMode": url.invoke_mode,
            "CreationTime": lambda_time(route.created),
            "LastModifiedTime": lambda_time(route.created),
        }
        if url.cors is not None:
            c = url.cors
            out["Cors"] = {
                "AllowCredentials": c.allow_credentials,
                "AllowHeaders": c.allow_headers,
                "AllowMethods": c.allow_methods,
                "AllowOrigins": c.allow_origins,
                "ExposeHeaders": c.expose_headers,
                "MaxAge": c.max_age,
            }
        return out

    async def get_concurrency(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:GetFunctionConcurrency")
        if route.reserved_concurrency is None:
            return {}
        return {"ReservedConcurrentExecutions": route.reserved_concurrency}

    async def get_event_invoke_config(
        self, request: web.Request, identity: Identity
    ) -> dict[str, Any]:
        route, qualifier = self._function(request, identity, "lambda:GetFunctionEventInvokeConfig")
        self._version_config(route, qualifier)  # an unknown qualifier is a 404 of its own
        settings = route.async_settings.get(qualifier or LATEST)
        arn = f"{route.arn}:{qualifier or LATEST}"
        if settings is None or not settings.configured:
            raise ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")
        return settings.event_invoke_config(arn)

    async def list_event_invoke_configs(
        self, request: web.Request, identity: Identity
    ) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:ListFunctionEventInvokeConfigs")
        configs = [
            settings.event_invoke_config(f"{route.arn}:{qualifier}")
            for qualifier, settings in route.async_settings.items()
            if settings.configured
        ]
        return _page(configs, request, "FunctionEventInvokeConfigs")

    async def list_event_source_mappings(
        self, request: web.Request, identity: Identity
    ) -> dict[str, Any]:
        principal = identity.principal
        authorize(
            identity,
            "lambda:ListEventSourceMappings",
            "*",
            principal.account,
            None,
            context_keys(request, identity),
            identity.principal.namespace,
        )
        items = self.invoker.table.event_source_configurations(principal.namespace)
        if name := request.query.get("FunctionName"):
            try:
                ref = parse_function_name(name, None)
            except InvalidFunctionName as e:
                raise InvalidParameterValue(str(e)) from e
            items = [i for i in items if _function_of(i["FunctionArn"]) == ref.name]
        if source := request.query.get("EventSourceArn"):
            items = [i for i in items if i["EventSourceArn"] == source]
        return _page(items, request, "EventSourceMappings")

    async def get_event_source_mapping(
        self, request: web.Request, identity: Identity
    ) -> dict[str, Any]:
        principal = identity.principal
        uuid = request.match_info["uuid"]
        arn = (
            f"arn:aws:lambda:{self.settings.region}:{principal.account}:event-source-mapping:{uuid}"
        )
        authorize(
            identity,
            "lambda:GetEventSourceMapping",
            arn,
            principal.account,
            None,
            context_keys(request, identity),
            identity.principal.namespace,
        )
        for item in self.invoker.table.event_source_configurations(principal.namespace):
            if item["UUID"] == uuid:
                return item
        raise ResourceNotFound(f"The resource you requested does not exist. (UUID: {uuid})")

    async def get_policy(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        route, _ = self._function(request, identity, "lambda:GetPolicy")
        raw = route.policy_document
        if raw is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return {"Policy": json.dumps(raw), "RevisionId": ""}

    async def account_settings(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        authorize(
            identity,
            "lambda:GetAccountSettings",
            "*",
            identity.principal.account,
            None,
            context_keys(request, identity),
            identity.principal.namespace,
        )
        limiter = self.invoker.limiter
        mine = [
            r for r in self.invoker.table.routes() if r.namespace == identity.principal.namespace
        ]
        return {
            "AccountLimit": {
                "ConcurrentExecutions": limiter.regional_limit,
                "UnreservedConcurrentExecutions": max(
                    0, limiter.regional_limit - self.invoker.table.reserved_total()
                ),
                "CodeSizeUnzipped": 262144000,
                "CodeSizeZipped": 52428800,
                "TotalCodeSize": 80530636800,
            },
            "AccountUsage": {
                "FunctionCount": len(mine),
                "TotalCodeSize": sum(
                    int(r.versions[LATEST].configuration.get("CodeSize", 0)) for r in mine
                ),
            },
        }

    async def unsupported(self, request: web.Request, identity: Identity) -> dict[str, Any]:
        raise UnsupportedOperation(
            f"{request.method} {request.path} is not supported: klambda manages functions with "
            "manifests (kubectl apply, klambda apply)"
        )
