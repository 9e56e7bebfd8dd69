"""Function URLs: ``<url-id>.<url-domain>`` (host form) and ``/lambda-url/<url-id>/`` (path form).

Both forms give the function the same event: the path form's prefix is not part of rawPath.
"""

from __future__ import annotations

import json

from aiohttp import web

from klambda.controller.api.routes import parse_url_id
from klambda.gateway.errors import LambdaError, ResourceNotFound, error_response
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.requests import read_body
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.url_event import BadFunctionResponse, HttpRequest, build_event, build_response

PATH_PREFIX = "/lambda-url/"


class AccessDenied(LambdaError):
    status = 403
    error_type = "AccessDeniedException"


def host_url_id(host: str, domain: str) -> str | None:
    """The URL id in a host-form URL's Host header, or None when it is not one."""
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    suffix = "." + domain
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


class FunctionUrls:
    def __init__(self, invoker: Invoker, settings: GatewaySettings) -> None:
        self.invoker = invoker
        self.settings = settings

    async def handle(self, request: web.Request, url_id: str, path: str) -> web.StreamResponse:
        request_id = self.invoker.new_request_id()
        try:
            return await self._handle(request, url_id, path, request_id)
        except LambdaError as e:
            return error_response(e, request_id)

    async def _handle(
        self, request: web.Request, url_id: str, path: str, request_id: str
    ) -> web.StreamResponse:
        namespace, name, qualifier = parse_url_id(url_id, self.settings.default_namespace)
        route = self.invoker.route(namespace, name, qualifier)
        alias = route.aliases.get(qualifier) if qualifier is not None else None
        url = route.url if qualifier is None else alias.url if alias is not None else None
        if url is None:
            raise ResourceNotFound(f"Function URL not found: {url_id}")
        if url.auth_type == "AWS_IAM":
            raise AccessDenied("Forbidden: AWS_IAM function URLs need a signed request")
        body = await read_body(request, self.settings.max_sync_payload)
        peer = request.remote or ""
        event = build_event(
            HttpRequest(
                method=request.method,
                path=path,
                raw_query=request.query_string,
                headers=list(request.headers.items()),
                body=body,
                source_ip=peer,
                protocol=f"HTTP/{request.version.major}.{request.version.minor}",
                domain=request.host.rsplit(":", 1)[0],
            ),
            request_id=request_id,
            url_id=url_id,
            account_id=self.invoker.table.account(namespace),
        )
        result = await self.invoker.invoke(
            Invocation(namespace, name, qualifier, json.dumps(event).encode(), request_id)
        )
        headers = {"x-amzn-RequestId": request_id}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
            return web.Response(
                status=502, body=result.payload, content_type="application/json", headers=headers
            )
        try:
            http = build_response(result.payload)
        except BadFunctionResponse as e:
            body = json.dumps({"Message": f"Internal Server Error: {e}"}).encode()
            return web.Response(
                status=502, body=body, content_type="application/json", headers=headers
            )
        response = web.Response(status=http.status, body=http.body, headers=headers)
        for key, value in http.headers:
            if key.lower() == "content-type":
                response.headers["Content-Type"] = value
            else:
                response.headers.add(key, value)
        return response
