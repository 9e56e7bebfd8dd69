"""Shared test helpers: real processes, free ports, waiting with deadlines."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from klambda.api.isolation import blocked_for_others
from klambda.api.lifecycle import die_with_parent
from klambda.api.shim_config import ShimConfig
from klambda.gateway.shim_client import ShimClient
from klambda.protos import shim_pb2, shim_pb2_grpc

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def shim_config(tmp: Path, files: dict[str, str], **kw: Any) -> ShimConfig:
    code = tmp / "code"
    code.mkdir(exist_ok=True)
    for name, content in files.items():
        path = code / name
        path.write_text(content)
        if name == "bootstrap":
            path.chmod(0o755)
    base = ShimConfig(
        function_name="fn",
        version="$LATEST",
        runtime="python3.11",
        handler="app.handler",
        code_dir=str(code),
        function_arn=ARN,
        log_dir=str(tmp / "logs"),
    )
    return replace(base, **kw)


class ShimHandle:
    """A running shim, invoked through the gateway's own client (one stream per shim)."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        address: str,
        config: ShimConfig,
        data_address: str = "",
    ):
        self.process = process
        self.address = address
        """gRPC (Status, Provision, InvokeStream)."""
        self.data_address = data_address
        """The data path the gateway's client invokes it on."""
        self.config = config
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = shim_pb2_grpc.ShimStub(self.channel)
        self.client = ShimClient()

    async def invoke(
        self, event: Any = None, timeout: float = 30, **kw: Any
    ) -> shim_pb2.InvokeResponse:
        payload = json.dumps({} if event is None else event).encode()
        kw.setdefault("request_id", uuid.uuid4().hex)
        request = shim_pb2.InvokeRequest(payload=payload, **kw)
        version = (self.config.namespace, self.config.function_name, self.config.version)
        return await self.client.invoke(self.data_address, request, timeout, version)

    def log_text(self) -> str:
        folder = Path(self.config.log_dir)
        files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
        return "".join(p.read_text() for p in files)


async def start_shim(
    config_path: Path | None,
    *,
    config_env: str | None = None,
    env: dict[str, str] | None = None,
    stdout: Any = None,
    stderr: Any = asyncio.subprocess.DEVNULL,
) -> tuple[asyncio.subprocess.Process, int]:
    """``python -m klambda.shim`` with its ready report on a pipe, as the platforms start it;
    returns the process and the pipe's read end (for ``read_report``). ``config_env``: the
    settings are in that variable of ``env`` (as in a pod), not a file."""
    where = ["--config-env", config_env] if config_env else [str(config_path)]
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "klambda.shim",
            *where,
            "--ready-fd",
            str(write_fd),
            pass_fds=(write_fd,),
            env=env,
            stdout=stdout or asyncio.subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=die_with_parent(),  # a killed test run leaks no shims
        )
    finally:
        os.close(write_fd)
    return process, read_fd


async def read_report(read_fd: int, timeout: float | None = 30) -> dict[str, Any] | None:
    """The shim's one-line ready report (port, or error); None if it exited without one."""
    try:
        line = await asyncio.wait_for(asyncio.to_thread(os.read, read_fd, 4096), timeout)
    finally:
        os.close(read_fd)
    return dict(json.loads(line)) if line else None


@asynccontextmanager
async def running_shim(
    config: ShimConfig, tmp: Path, stdout: Path | None = None
) -> AsyncIterator[ShimHandle]:
    """A real shim process (python -m klambda.shim), stopped (SIGINT) afterwards; its stdout
    goes to ``stdout`` when given."""
    path = tmp / "shim.json"
    path.write_text(config.to_json())
    out = stdout.open("wb") if stdout else None
    process, read_fd = await start_shim(path, stdout=out, stderr=None)
    if out:
        out.close()
    report = await read_report(read_fd) or {"error": "the shim exited before reporting"}
    if "error" in report:
        await process.wait()
        raise RuntimeError(report["error"])
    handle = ShimHandle(
        process,
        f"127.0.0.1:{report['port']}",
        config,
        f"127.0.0.1:{report['data_port']}",
    )
    try:
        yield handle
    finally:
        await handle.client.close()
        await handle.channel.close()
        if process.returncode is None:
            process.send_signal(2)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


def python_for_others() -> bool:
    """A python3 on PATH that an unprivileged user can run (what a bootstrap's
    ``#!/usr/bin/env python3`` finds when klambda runs it as a function's own user)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("python3", path=folder)
        if candidate and blocked_for_others([candidate]) is None:
            return True
    return False
