"""A shim that cannot start environments is not ready (its pod leaves the Service), refuses
invocations as not started (the gateway tries another environment), and recovers by itself.

Issue 10 item 8: with one environment per pod, a pod whose shim could not make one stayed Ready
and took traffic it could only fail."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from klambda.gateway.shim_client import ShimUnavailable
from tests.helpers import free_port, running_shim, shim_config

BOOTSTRAP = """#!/usr/bin/env python3
import os, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(API + "next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
    urllib.request.urlopen(urllib.request.Request(API + request_id + "/response", data=b'"ok"'))
"""


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/ready"
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status, await r.json()


async def until_ready(port: int, timeout: float) -> float:
    start = time.monotonic()
    while (await ready(port))[0] != 200:
        assert time.monotonic() - start < timeout, "the shim did not become ready again"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_a_shim_that_cannot_start_environments_is_not_ready_until_it_can(
    tmp_path: Path,
) -> None:
    health = free_port()
    config = shim_config(
        tmp_path,
        {"bootstrap": BOOTSTRAP},
        runtime="provided.al2023",
        handler="x",
        health_port=health,
        max_environments=1,  # as in every pod
        idle_timeout=0.2,  # the warm environment goes, so the next invocation needs a new one
    )
    bootstrap = Path(config.code_dir, "bootstrap")
    async with running_shim(config, tmp_path) as shim:
        assert (await ready(health))[0] == 200
        assert json.loads((await shim.invoke()).payload) == "ok"
        await asyncio.to_thread(
            bootstrap.chmod, 0o644
        )  # the runtime can no longer be started (a broken image, no fds)
        await asyncio.sleep(0.8)  # reaped
        with pytest.raises(ShimUnavailable, match="cannot start an environment: PermissionError"):
            await shim.invoke()
        status, body = await ready(health)
        assert status == 503
        assert body["errorType"] == "Runtime.NotReady" and "PermissionError" in body["errorMessage"]
        await asyncio.to_thread(
            bootstrap.chmod, 0o755
        )  # repaired: the shim finds out by itself, with no traffic
        await until_ready(health, timeout=10)
        assert json.loads((await shim.invoke()).payload) == "ok"
