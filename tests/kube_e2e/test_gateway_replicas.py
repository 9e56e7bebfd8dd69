"""Three gateway replicas on the API double with the process kubelet and one Redis, keeping
their concurrency limits there (``--shared-concurrency``, what the chart sets for more than one
replica): a function with reserved concurrency 4 gets 12 calls at once, spread over the three
gateways' function URLs, and exactly 4 run; the other 8 are throttled with Lambda's 429."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from klambda.gateway.serve import run as run_gateway
from klambda.gateway.settings import GatewaySettings
from tests.helpers import free_port
from tests.kube_e2e.test_operator_e2e import Cluster, double_backend

RESERVED = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: capped}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  reservedConcurrency: 4
  url: {authType: NONE}
  code:
    inline:
      app.py: |
        import time
        def handler(event, context):
            time.sleep(1.5)
            return {"ok": True}
"""


@contextlib.asynccontextmanager
async def more_gateways(c: Cluster, n: int) -> AsyncIterator[list[str]]:
    """``n`` more gateways beside the backend's, sharing its Redis; yields their base URLs."""
    stop = asyncio.Event()
    ports = [free_port() for _ in range(n)]
    tasks = [
        asyncio.create_task(
            run_gateway(
                GatewaySettings(
                    host="127.0.0.1",
                    port=port,
                    redis_url=c.redis_url,
                    shutdown_grace=2.0,
                    shared_concurrency=True,
                ),
                str(c.kubeconfig),
                None,
                f"http://127.0.0.1:{port}",
                stop,
            )
        )
        for port in ports
    ]
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=30)


async def test_three_gateways_admit_exactly_the_reserved_concurrency(tmp_path: Path) -> None:
    async with double_backend(tmp_path, shared_concurrency=True) as c:
        manifest = tmp_path / "capped.yaml"
        manifest.write_text(RESERVED)
        await c.kubectl("apply", "-f", str(manifest))
        async with more_gateways(c, 2) as others, aiohttp.ClientSession() as s:
            bases = [c.gateway_url, *others]

            async def call(base: str) -> int:
                url = f"{base}/lambda-url/capped/"
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
                    await r.read()
                    return r.status

            async def warm() -> bool:  # each gateway has the route and a pod is up
                return all(await asyncio.gather(*(_ok(call, b) for b in bases)))

            await c.eventually(warm, timeout=90, what="HTTP 200 from capped on every gateway")
            statuses = await asyncio.gather(*(call(bases[i % 3]) for i in range(12)))
        assert sorted(statuses) == [200] * 4 + [429] * 8, statuses


async def _ok(call: object, base: str) -> bool:
    return bool(await call(base) == 200)  # type: ignore[operator]
