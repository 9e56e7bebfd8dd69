"""Serving: the Runtime API, the gRPC server, readiness and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import replace

import grpc

from klambda.api.reasons import Reason
from klambda.api.shim_config import ShimConfig
from klambda.protos import SERVER_OPTIONS, shim_pb2_grpc
from klambda.shim.auth import CallerAuth
from klambda.shim.data_path import DataPath
from klambda.shim.identity import runtime_user
from klambda.shim.runtimes import RuntimeUnavailable, resolve_command
from klambda.shim.service import ShimService
from klambda.shim.shim import Shim

log = logging.getLogger("klambda.shim")


def _report(fd: int | None, message: dict[str, object]) -> None:
    line = json.dumps(message) + "\n"
    if fd is None:
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    os.write(fd, line.encode())
    os.close(fd)


async def serve(config: ShimConfig, ready_fd: int | None) -> int:
    """Runs the shim until told to stop; its runtimes get a private HOME for its lifetime
    (never the user's, whose ~/.aws or ~/.kube a function must not find)."""
    if config.home_dir:
        return await _serve(config, ready_fd)
    home = tempfile.mkdtemp(prefix="klambda-home-")  # 0700
    try:
        return await _serve(replace(config, home_dir=home), ready_fd)
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def _serve(config: ShimConfig, ready_fd: int | None) -> int:
    try:
        command = (
            []
            if config.external_runtime
            else await resolve_command(config.runtime, config.handler, config.code_dir)
        )
    except RuntimeUnavailable as e:
        _report(ready_fd, {"error": str(e), "reason": Reason.INVALID_RUNTIME})
        return 3
    uid = runtime_user(config, command)
    config = replace(config, runtime_uid=-1 if uid is None else uid)
    if uid is not None:  # its HOME becomes the function user's own
        os.chown(config.home_dir, uid, uid)
    missing = [name for name in config.inherited_environment if name not in os.environ]
    if missing:  # the platform resolves secretRefs before starting a shim; never start without
        message = f"secret values were not provided for {', '.join(missing)}"
        _report(ready_fd, {"error": message, "reason": Reason.SECRET_NOT_FOUND})
        return 3
    shim = Shim(config, command)
    await shim.start()
    server = grpc.aio.server(
        options=[
            *SERVER_OPTIONS,
            # a second shim on the same address must fail, not silently share its traffic
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[CallerAuth(config.caller_token)] if config.caller_token else [],
    )
    service = ShimService(shim)
    shim_pb2_grpc.add_ShimServicer_to_server(service, server)
    port = server.add_insecure_port(f"{config.grpc_host}:{config.grpc_port}")
    await server.start()
    data_path = DataPath(service, config.caller_token or None)
    data_port = await data_path.start(config.grpc_host, config.data_port)
    shim.serving = True
    stop = asyncio.Event()
    graceful = True
    loop = asyncio.get_running_loop()

    def on_signal(drain: bool) -> None:
        nonlocal graceful
        graceful = graceful and drain
        stop.set()

    # SIGTERM: finish in-flight invocations first (roll-outs, pod termination).
    # SIGINT: stop now (the platform itself is shutting down).
    loop.add_signal_handler(signal.SIGTERM, on_signal, True)
    loop.add_signal_handler(signal.SIGINT, on_signal, False)
    _report(ready_fd, {"ready": True, "port": port, "data_port": data_port, "pid": os.getpid()})
    await stop.wait()
    grace = (config.drain_grace or float(config.timeout) + config.init_timeout) if graceful else 0
    log.info("draining for up to %.1fs", grace)
    service.drain()
    data_path.drain()
    await server.stop(grace)
    await shim.drain(grace)
    await data_path.close()
    await shim.close()
    return 0
