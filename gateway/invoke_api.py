"""Lambda's Invoke API: ``POST /2015-03-31/functions/{FunctionName}/invocations``.

Every call is SigV4-authenticated and authorized for ``lambda:InvokeFunction`` on the function
ARN as named (qualified when a qualifier is given). ``RequestResponse`` runs the function and
returns its result; ``Event`` stores the event durably and answers 202; ``DryRun`` answers 204
once auth and existence check out.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

from aiohttp import web

from klambda.api.arn import InvalidFunctionName, parse_function_name
from klambda.gateway.async_policy import lineage_of
from klambda.gateway.async_queue import AsyncEvent, AsyncQueue
from klambda.gateway.auth import Authenticator, context_keys
from klambda.gateway.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    LambdaError,
    ServiceError,
    error_response,
)
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.requests import read_body, too_large
from klambda.gateway.settings import GatewaySettings

CLIENT_CONTEXT_MAX = 3583
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TYPES = ("None", "Tail")


class InvokeApi:
    def __init__(
        self,
        invoker: Invoker,
        settings: GatewaySettings,
        authenticator: Authenticator,
        queue: AsyncQueue | None = None,
    ) -> None:
        self.invoker = invoker
        self.settings = settings
        self.authenticator = authenticator
        self.queue = queue

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = self.invoker.new_request_id()
        try:
            return await self._handle(request, request_id)
        except LambdaError as e:
            return error_response(e, request_id)

    async def _handle(self, request: web.Request, request_id: str) -> web.StreamResponse:
        body = await read_body(request, self.settings.max_sync_payload)
        identity = await self.authenticator.authenticate(request, body)
        try:
            ref = parse_function_name(
                request.match_info["name"], request.query.get("Qualifier") or None
            )
        except InvalidFunctionName as e:
            raise InvalidParameterValue(str(e)) from e
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{invocation_type}' at 'invocationType' "
                f"failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(INVOCATION_TYPES)}]"
            )
        log_type = request.headers.get("X-Amz-Log-Type", "None")
        if log_type not in LOG_TYPES:
            raise InvalidParameterValue(f"Unsupported log type {log_type!r}: None or Tail")
        route = self.invoker.authorized_route(
            ref, identity, "lambda:InvokeFunction", context_keys(request, identity)
        )
        namespace = route.namespace
        payload = _json_payload(body)
        self.invoker.check(route, ref.qualifier)
        if invocation_type == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request_id})
        # a function that calls klambda passes on its trace header: one hop more
        hops = lineage_of(request.headers.get("X-Amzn-Trace-Id"))
        lineage = None if hops is None else hops + 1
        if invocation_type == "Event":
            return await self._enqueue(
                AsyncEvent(
                    request_id,
                    namespace,
                    ref.name,
                    ref.qualifier,
                    payload.decode(),
                    time.time(),
                    lineage=lineage or 0,
                )
            )
        tail = log_type == "Tail"
        result = await self.invoker.invoke(
            Invocation(
                namespace,
                ref.name,
                ref.qualifier,
                payload,
                request_id,
                tail_log=tail,
                client_context=_client_context(request.headers.get("X-Amz-Client-Context")),
                lineage=lineage,
            )
        )
        headers = {
            "x-amzn-RequestId": request_id,
            "X-Amz-Executed-Version": result.executed_version,
        }
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail).decode()
        return web.Response(
            status=200, body=result.payload, content_type="application/json", headers=headers
        )

    async def _enqueue(self, event: AsyncEvent) -> web.Response:
        if len(event.payload.encode()) > self.settings.max_async_payload:
            raise too_large(self.settings.max_async_payload)
        if self.queue is None:
            raise ServiceError("asynchronous invocation needs Redis (the gateway has none)")
        await self.queue.enqueue(event)
        self.invoker.metrics.async_received.labels(event.namespace, event.function).inc()
        return web.Response(status=202, headers={"x-amzn-RequestId": event.request_id})


def _json_payload(body: bytes) -> bytes:
    """The payload, which must be JSON in UTF-8 as Lambda's is (Python's json alone would also
    take UTF-16 or UTF-32 bytes, which no runtime can read)."""
    if not body.strip():
        return b"{}"
    try:
        json.loads(body.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError included
        raise InvalidRequestContent(f"Could not parse request body into json: {e}") from e
    return body


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
