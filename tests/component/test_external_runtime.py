"""A runtime the shim does not start (a container image function's own process, beside it).

The shim serves the Runtime API on a fixed port; the "image" here is awslambdaric started by the
test, as the pod's function container would be. When the shim gives up on it (a timeout), its
/healthz fails once so that the kubelet's liveness probe restarts that container.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from tests.component.test_shim import APP
from tests.helpers import free_port, running_shim, shim_config


async def start_runtime(code: str, port: int) -> asyncio.subprocess.Process:
    """What the function container runs: the image's entry point, pointed at the shim."""
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "PYTHONPATH": code,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "awslambdaric",
        "app.handler",
        cwd=code,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def healthz(port: int) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status


async def test_external_runtime_serves_and_is_restarted_after_a_timeout(tmp_path: Path) -> None:
    api_port, health_port = free_port(), free_port()
    config = shim_config(
        tmp_path,
        {"app.py": APP},
        runtime="",
        handler="",
        timeout=1.0,
        external_runtime=True,
        runtime_api_port=api_port,
        health_port=health_port,
        max_environments=1,
        prewarm=1,
        acquire_timeout=10,
    )
    async with running_shim(config, tmp_path) as shim:
        runtime = await start_runtime(config.code_dir, api_port)
        try:
            first = await shim.invoke({"action": "context"}, request_id="r-1")
            assert json.loads(first.payload)["aws_request_id"] == "r-1"
            assert first.init_duration_ms > 0
            second = await shim.invoke()
            assert json.loads(second.payload)["count"] == 2  # the same, warm process
            assert await healthz(health_port) == 200

            stuck = await shim.invoke({"action": "sleep", "seconds": 30})
            assert json.loads(stuck.payload)["errorType"] == "Sandbox.Timedout"
            assert await healthz(health_port) == 503  # the probe restarts the container...
            assert await healthz(health_port) == 200  # ...once
            runtime.kill()  # as the kubelet does on a failed liveness probe
            await runtime.wait()
            runtime = await start_runtime(config.code_dir, api_port)
            fresh = await shim.invoke()
            assert json.loads(fresh.payload)["count"] == 1
            assert fresh.init_duration_ms > 0
        finally:
            if runtime.returncode is None:
                runtime.kill()
            await runtime.wait()
