"""Lambda's Invoke API: ``POST /2015-03-31/functions/{FunctionName}/invocations``."""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from klambda.controller.api.arn import InvalidFunctionName, parse_function_name
from klambda.gateway.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    LambdaError,
    ResourceNotFound,
    error_response,
)
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.requests import read_body
from klambda.gateway.settings import GatewaySettings

CLIENT_CONTEXT_MAX = 3583


class InvokeApi:
    def __init__(self, invoker: Invoker, settings: GatewaySettings) -> None:
        self.invoker = invoker
        self.settings = settings

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = self.invoker.new_request_id()
        try:
            return await self._handle(request, request_id)
        except LambdaError as e:
            return error_response(e, request_id)

    def _namespace(self, account: str | None) -> str:
        if account is None:
            return self.settings.default_namespace
        namespace = self.invoker.table.namespace_of(account)
        if namespace is None:
            raise ResourceNotFound(f"Function not found: account {account} has no functions")
        return namespace

    async def _handle(self, request: web.Request, request_id: str) -> web.StreamResponse:
        try:
            ref = parse_function_name(
                request.match_info["name"], request.query.get("Qualifier") or None
            )
        except InvalidFunctionName as e:
            raise InvalidParameterValue(str(e)) from e
        namespace = self._namespace(ref.account)
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise InvalidParameterValue(f"Unsupported invocation type {invocation_type!r}")
        payload = await read_body(request, self.settings.max_sync_payload)
        if payload.strip():
            try:
                json.loads(payload)
            except ValueError as e:
                raise InvalidRequestContent(f"Could not parse request body into json: {e}") from e
        else:
            payload = b"{}"
        route = self.invoker.route(namespace, ref.name, ref.qualifier)
        self.invoker.check(route, ref.qualifier)
        if invocation_type == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request_id})
        if invocation_type == "Event":
            raise InvalidParameterValue("Event (asynchronous) invocations are not supported yet")
        result = await self.invoker.invoke(
            Invocation(
                namespace,
                ref.name,
                ref.qualifier,
                payload,
                request_id,
                tail_log=request.headers.get("X-Amz-Log-Type") == "Tail",
                client_context=_client_context(request.headers.get("X-Amz-Client-Context")),
            )
        )
        headers = {
            "x-amzn-RequestId": request_id,
            "X-Amz-Executed-Version": result.executed_version,
        }
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail).decode()
        return web.Response(
            status=200, body=result.payload, content_type="application/json", headers=headers
        )


def _client_context(header: str | None) -> str:
    if not header:
        return ""
    if len(header) > CLIENT_CONTEXT_MAX:
        raise InvalidParameterValue("Client context must be 3583 bytes or less")
    try:
        decoded = base64.b64decode(header, validate=True).decode()
        json.loads(decoded)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequestContent("Client context must be base64-encoded JSON") from e
    return decoded
