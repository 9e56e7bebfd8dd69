"""An invoker for dispatcher tests: a real routing table and metrics, invocations answered by
the test (the dispatcher itself, its queue and Redis are real)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from klambda.api.arn import account_for, function_arn
from klambda.api.routes import FunctionRoute
from klambda.gateway.invoking import Invocation, InvokeResult
from klambda.gateway.metrics import Metrics
from klambda.gateway.routing import RoutingTable


def routing_table(*functions: tuple[str, str], **routes: Any) -> RoutingTable:
    """A synced table holding ``functions`` (namespace, name), each a bare route."""
    table = RoutingTable()
    for namespace, name in functions:
        account = account_for(namespace)
        arn = function_arn("us-east-1", account, name)
        table.publish(FunctionRoute(namespace, name, arn, account=account, **routes))
    table.mark_synced()
    return table


def ok(invocation: Invocation, payload: bytes = b"null", error: str = "") -> InvokeResult:
    return InvokeResult(invocation.request_id, payload, error, error, "$LATEST", b"", 1.0, 0.0)


class FakeInvoker:
    """Counts invocations; ``answer`` decides each (default: success)."""

    def __init__(
        self,
        *functions: tuple[str, str],
        answer: Callable[[Invocation], Awaitable[InvokeResult]] | None = None,
    ) -> None:
        self.table = routing_table(*functions)
        self.metrics = Metrics()
        self.count = 0
        self.calls: list[Invocation] = []
        self.answer = answer

    def arn(self, namespace: str, name: str, qualifier: str | None = None) -> str:
        return function_arn("us-east-1", account_for(namespace), name, qualifier)

    async def invoke(self, invocation: Invocation) -> InvokeResult:
        self.count += 1
        self.calls.append(invocation)
        if self.answer is not None:
            return await self.answer(invocation)
        return ok(invocation)


async def never(invocation: Invocation) -> InvokeResult:
    """An invocation still running when the dispatcher is told to stop."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
