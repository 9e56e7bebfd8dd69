"""Function URLs: ``<url-id>.<url-domain>`` (host form) and ``/lambda-url/<url-id>/`` (path form).

Both forms give the function the same event: the path form's prefix is not part of rawPath.
Order of checks, as Lambda's URLs: CORS preflight (answered here, never invoking), then auth
(``AWS_IAM``: a SigV4-signed caller allowed ``lambda:InvokeFunctionUrl``; ``NONE``: anyone the
resource policy does not deny), then the invocation; configured CORS headers replace the
function's own.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from klambda.api.policy import Ask, Caller, evaluate
from klambda.api.routes import FunctionRoute, parse_url_id
from klambda.api.types import FunctionUrl
from klambda.gateway import cors as cors_mod
from klambda.gateway.auth import Authenticator, Identity, authorize, context_keys, source_ip
from klambda.gateway.errors import AccessDenied, LambdaError, ResourceNotFound, error_response
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.requests import read_body
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.url_event import BadFunctionResponse, HttpRequest, build_event, build_response

log = logging.getLogger(__name__)

PATH_PREFIX = "/lambda-url/"
ACTION = "lambda:InvokeFunctionUrl"


def host_url_id(host: str, domain: str) -> str | None:
    """The URL id in a host-form URL's Host header, or None when it is not one."""
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    suffix = "." + domain
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def _authorizer(identity: Identity) -> dict[str, object]:
    """``requestContext.authorizer.iam`` as Lambda fills it for AWS_IAM URLs."""
    p = identity.principal
    return {
        "iam": {
            "accessKey": identity.access_key_id,
            "accountId": p.account,
            "callerId": p.user_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": p.arn,
            "userId": p.user_id,
        }
    }


class FunctionUrls:
    def __init__(
        self, invoker: Invoker, settings: GatewaySettings, authenticator: Authenticator
    ) -> None:
        self.invoker = invoker
        self.settings = settings
        self.authenticator = authenticator

    async def handle(self, request: web.Request, url_id: str, path: str) -> web.StreamResponse:
        request_id = self.invoker.new_request_id()
        try:
            return await self._handle(request, url_id, path, request_id)
        except LambdaError as e:
            return error_response(e, request_id)

    def _url(self, url_id: str) -> tuple[FunctionRoute, FunctionUrl, str | None]:
        namespace, name, qualifier = parse_url_id(url_id, self.settings.default_namespace)
        route = self.invoker.route(namespace, name, qualifier)
        alias = route.aliases.get(qualifier) if qualifier is not None else None
        url = route.url if qualifier is None else alias.url if alias is not None else None
        if url is None:
            raise ResourceNotFound(f"Function URL not found: {url_id}")
        return route, url, qualifier

    async def _handle(
        self, request: web.Request, url_id: str, path: str, request_id: str
    ) -> web.StreamResponse:
        route, url, qualifier = self._url(url_id)
        lowered = {k.lower(): v for k, v in request.headers.items()}
        if url.cors is not None and cors_mod.is_preflight(request.method, lowered):
            answer = cors_mod.preflight(url.cors, lowered)
            return web.Response(status=answer.status, headers=answer.headers)
        body = await read_body(request, self.settings.max_sync_payload)
        identity = await self._authorize(request, body, route, url, qualifier)
        event = build_event(
            HttpRequest(
                method=request.method,
                path=path,
                raw_query=request.query_string,
                headers=list(request.headers.items()),
                body=body,
                source_ip=source_ip(request),
                protocol=f"HTTP/{request.version.major}.{request.version.minor}",
                domain=request.host.rsplit(":", 1)[0],
            ),
            request_id=request_id,
            url_id=url_id,
            account_id=route.account or self.invoker.table.account(route.namespace),
            authorizer=_authorizer(identity) if identity else None,
        )
        result = await self.invoker.invoke(
            Invocation(
                route.namespace, route.name, qualifier, json.dumps(event).encode(), request_id
            )
        )
        response = self._response(result.payload, result.function_error, request_id)
        if url.cors is not None:
            for name in cors_mod.CORS_HEADERS:
                response.headers.popall(name, None)
            for name, value in cors_mod.response_headers(url.cors, lowered.get("origin")).items():
                if name == "Vary" and "Vary" in response.headers:
                    value = f"{response.headers['Vary']}, {value}"
                response.headers[name] = value
        return response

    async def _authorize(
        self,
        request: web.Request,
        body: bytes,
        route: FunctionRoute,
        url: FunctionUrl,
        qualifier: str | None,
    ) -> Identity | None:
        resource = self.invoker.arn(route.namespace, route.name, qualifier)
        account = route.account or self.invoker.table.account(route.namespace)
        extra = {"lambda:FunctionUrlAuthType": url.auth_type, "lambda:FunctionArn": resource}
        if url.auth_type == "AWS_IAM":
            identity = await self.authenticator.authenticate(request, body)
            authorize(
                identity,
                ACTION,
                resource,
                account,
                route.policy,
                context_keys(request, identity, extra),
                route.namespace,
            )
            return identity
        # NONE: public, unless the resource policy denies.
        if route.policy is not None:
            ask = Ask(
                Caller(None, None), ACTION, resource, account, context_keys(request, None, extra)
            )
            decision = evaluate((), route.policy, ask)
            if "explicit deny" in decision.reason:
                raise AccessDenied("Forbidden")
        return None

    def _response(self, payload: bytes, function_error: str, request_id: str) -> web.Response:
        """The caller's answer. A function error or an unusable response is Lambda's plain
        ``502 Internal Server Error``: the detail (a stack trace, server paths) is for the
        function's log, never for whoever calls a URL."""
        headers = {"x-amzn-RequestId": request_id}
        if function_error:
            log.info("function URL request %s: function error (%s)", request_id, function_error)
            return _internal_error(headers)
        try:
            http = build_response(payload)
        except BadFunctionResponse as e:
            log.warning("function URL request %s: invalid function response: %s", request_id, e)
            return _internal_error(headers)
        response = web.Response(status=http.status, body=http.body, headers=headers)
        for key, value in http.headers:
            if key.lower() == "content-type":
                response.headers["Content-Type"] = value
            else:
                response.headers.add(key, value)
        return response


def _internal_error(headers: dict[str, str]) -> web.Response:
    return web.Response(status=502, text="Internal Server Error", headers=headers)
