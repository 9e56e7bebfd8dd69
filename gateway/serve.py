"""``klambda gateway``: the gateway as its own process, routing by what the cluster holds.

Entry point only: wires the Kubernetes view (routes, scaling), principals from Secrets and
ServiceAccount tokens, and the application; stops cleanly once ``stop`` is set (the CLI sets it
on SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket

from aiohttp import web

from klambda.api.world import RouteContext
from klambda.gateway.app import create_app
from klambda.gateway.async_queue import async_key
from klambda.gateway.kube_iam import SecretDirectory, TokenReviewer
from klambda.gateway.kube_view import KubeView
from klambda.gateway.routing import RoutingTable
from klambda.gateway.settings import GatewaySettings
from klambda.kube.client import KubeClient, KubeConfig
from klambda.kube.shim_key import read_shim_key

log = logging.getLogger("klambda.gateway")


async def run(
    settings: GatewaySettings,
    kubeconfig: str | None,
    namespaces: list[str] | None,
    public_url: str,
    stop: asyncio.Event,
    platform_namespace: str | None = None,
) -> int:
    """``platform_namespace``: where the platform key's Secret is (default: the client's
    namespace, in a pod its own)."""
    client = KubeClient(KubeConfig.load(kubeconfig))
    table = RoutingTable()
    view = KubeView(
        client,
        table,
        RouteContext(settings.region, public_url),
        namespaces,
        settings.concurrency_limit,
        keep_warm=settings.keep_warm,
        gateway_name=settings.name or f"{socket.gethostname()}-{os.getpid()}",
    )
    directory = SecretDirectory(client)
    informers = [
        asyncio.create_task(directory.keys.run()),
        asyncio.create_task(directory.accounts.run()),
    ]
    runner = None
    try:
        key = await read_shim_key(client, platform_namespace or client.config.namespace)
        settings = dataclasses.replace(settings, shim_key=key, async_key=async_key(key))
        await view.start()
        await asyncio.gather(directory.keys.synced.wait(), directory.accounts.synced.wait())
        app = create_app(settings, table, directory, view, TokenReviewer(client, directory))
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_grace
        )
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        log.info("gateway serving on %s:%d", settings.host, settings.port)
        await stop.wait()
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        for task in informers:
            task.cancel()
        await asyncio.gather(*informers, return_exceptions=True)
        await view.stop()
        await client.close()
