"""A pod that refuses an invocation because its environment is busy (another gateway replica's
call, which this one does not count) did not start it: the invoker tries another pod, keeps
trying the pods for up to ``busy_wait``, and throttles only then."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from klambda.api.routes import VersionTarget
from klambda.gateway.errors import TooManyRequests
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.metrics import Metrics
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shim_client import ShimBusy, ShimClient
from klambda.protos import shim_pb2
from tests.component.async_fakes import routing_table

FN = ("default", "fn")


class Pods:
    """Shims as the invoker sees them: the ``busy`` ones refuse, the others run the call."""

    def __init__(self, busy: set[str]) -> None:
        self.busy = busy
        self.inflight: dict[str, int] = {}
        self.tried: list[str] = []

    def pick(self, endpoints: tuple[str, ...]) -> str:
        return sorted(endpoints)[0]  # the worst case: every replica's first choice

    async def invoke(self, address: str, request: Any, deadline: float, version: Any) -> Any:
        self.tried.append(address)
        if address in self.busy:
            raise ShimBusy()
        return shim_pb2.InvokeResponse(payload=b'"ran"', executed_version="$LATEST")


def invoker(pods: Pods, endpoints: tuple[str, ...], busy_wait: float = 0.0) -> Invoker:
    routes = {"$LATEST": VersionTarget("$LATEST", endpoints=endpoints)}
    table = routing_table(FN, versions=routes)
    settings = GatewaySettings(busy_wait=busy_wait)
    return Invoker(table, pods, Metrics(), settings)  # type: ignore[arg-type]


async def test_a_busy_pod_passes_the_call_to_a_free_one() -> None:
    pods = Pods(busy={"a:9003"})
    result = await invoker(pods, ("a:9003", "b:9003")).invoke(Invocation(*FN, None, b"{}"))
    assert result.payload == b'"ran"'
    assert pods.tried == ["a:9003", "b:9003"]


async def test_every_pod_busy_is_a_throttle_with_lambdas_reason() -> None:
    pods = Pods(busy={"a:9003", "b:9003"})
    calls = invoker(pods, ("a:9003", "b:9003"))
    with pytest.raises(TooManyRequests) as refused:
        await calls.invoke(Invocation(*FN, None, b"{}"))
    assert refused.value.extra["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert sorted(pods.tried) == ["a:9003", "b:9003"]  # each once
    assert calls.metrics.throttles.labels(*FN)._value.get() == 1


async def test_busy_pods_are_tried_again_until_one_frees_within_the_busy_wait() -> None:
    """On Kubernetes a pod has one environment: a call waits, trying the pods in turn (new
    ones come as the Deployment grows), and is throttled only when busy_wait runs out."""
    pods = Pods(busy={"a:9003", "b:9003"})
    calls = invoker(pods, ("a:9003", "b:9003"), busy_wait=5.0)

    async def free_b_soon() -> None:
        await asyncio.sleep(0.3)
        pods.busy.discard("b:9003")

    freeing = asyncio.create_task(free_b_soon())
    result = await calls.invoke(Invocation(*FN, None, b"{}"))
    await freeing
    assert result.payload == b'"ran"' and pods.tried[-1] == "b:9003"
    assert len(pods.tried) > 2  # a round over both, a pause, and again
    assert calls.metrics.throttles.labels(*FN)._value.get() == 0
    pods.busy.update({"a:9003", "b:9003"})
    brief = invoker(pods, ("a:9003", "b:9003"), busy_wait=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TooManyRequests):
        await brief.invoke(Invocation(*FN, None, b"{}"))
    assert 0.2 <= asyncio.get_running_loop().time() - started < 2.0  # bounded


def test_ties_are_broken_at_random() -> None:
    """Replicas that each picked the first of equally idle pods would all meet on it."""
    client = ShimClient.__new__(ShimClient)
    client.inflight = {"b:9003": 1}
    endpoints = ("a:9003", "b:9003", "c:9003", "d:9003")
    picked = {client.pick(endpoints) for _ in range(200)}
    assert picked == {"a:9003", "c:9003", "d:9003"}  # never the busier one
