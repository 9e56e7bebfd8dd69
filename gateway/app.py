"""The gateway application factory: routes, host-form function URLs, auth, async intake,
metrics, and the resources that need cleaning up."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web

from klambda.api.iam import Directory
from klambda.api.tasks import cancel_and_wait
from klambda.gateway import openapi
from klambda.gateway.async_dispatch import Dispatcher
from klambda.gateway.async_queue import AsyncQueue
from klambda.gateway.auth import SOURCE_IP, Authenticator, TokenReviewer
from klambda.gateway.client_ip import client_ip, networks
from klambda.gateway.control_plane import ControlPlane
from klambda.gateway.errors import ServiceError, error_response
from klambda.gateway.event_sources import EventSourcePollers
from klambda.gateway.function_urls import PATH_PREFIX, FunctionUrls, host_url_id
from klambda.gateway.invoke_api import InvokeApi
from klambda.gateway.invoking import Activator, Invoker
from klambda.gateway.metrics import Metrics
from klambda.gateway.producer_api import ProducerApi
from klambda.gateway.routing import RoutingTable
from klambda.gateway.scheduler import Scheduler
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shared_concurrency import SharedConcurrency
from klambda.gateway.shim_client import ShimClient
from klambda.gateway.targets import Targets

INVOKER = web.AppKey("invoker", Invoker)
METRICS = web.AppKey("metrics", Metrics)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
DISPATCHER_STOP_TIMEOUT = 3.0
"""Seconds the async dispatcher gets to stop by itself (it requeues what was in flight)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


OPENAPI = openapi.document()
log = logging.getLogger(__name__)


@web.middleware
async def shaped_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A defect never reaches a caller as a traceback or an unshaped 500: it is logged and
    answered as Lambda's ServiceException (its own request id, to find it in the log)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        request_id = uuid.uuid4().hex
        log.exception("request %s (%s %s) failed", request_id, request.method, request.path)
        return error_response(ServiceError("An internal error occurred."), request_id)


async def serve_openapi(request: web.Request) -> web.Response:
    """The gateway's OpenAPI document (public, like /metrics)."""
    return web.json_response(OPENAPI)


def _shared_concurrency(
    settings: GatewaySettings, redis_client: aioredis.Redis | None
) -> SharedConcurrency | None:
    if not settings.shared_concurrency:
        return None
    if redis_client is None:
        raise ValueError("shared concurrency needs Redis (--redis-url)")
    return SharedConcurrency(redis_client)


def _renewals(shared: SharedConcurrency | None) -> list[asyncio.Task[None]]:
    """The task that keeps this replica's concurrency holders alive, when there are any."""
    if shared is None:
        return []
    return [asyncio.create_task(shared.run(), name="concurrency-renewals")]


def create_app(
    settings: GatewaySettings,
    table: RoutingTable,
    directory: Directory,
    activator: Activator | None = None,
    tokens: TokenReviewer | None = None,
) -> web.Application:
    metrics = Metrics()
    client = ShimClient(settings.shim_key)
    redis_client = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    shared = _shared_concurrency(settings, redis_client)
    invoker = Invoker(table, client, metrics, settings, activator, shared)
    authenticator = Authenticator(directory, settings.region, tokens, table.accounts)
    urls = FunctionUrls(invoker, settings, authenticator)
    queue = (
        AsyncQueue(redis_client, settings.async_queue_limit, settings.async_key)
        if redis_client is not None
        else None
    )
    invoke_api = InvokeApi(invoker, settings, authenticator, queue)

    trusted = networks(settings.trusted_proxies)

    @web.middleware
    async def client_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[SOURCE_IP] = client_ip(
            request.remote, request.headers.get("X-Forwarded-For"), trusted
        )
        return await handler(request)

    @web.middleware
    async def host_form_urls(request: web.Request, handler: Handler) -> web.StreamResponse:
        url_id = host_url_id(request.host, settings.url_domain)
        if url_id is not None:
            return await urls.handle(request, url_id, request.raw_path.split("?", 1)[0])
        return await handler(request)

    async def path_form_url(request: web.Request) -> web.StreamResponse:
        url_id = request.match_info["url_id"]
        rest = request.raw_path[len(PATH_PREFIX) + len(url_id) :].split("?", 1)[0]
        return await urls.handle(request, url_id, rest or "/")

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    async def prune_streams() -> None:
        while True:
            await asyncio.sleep(settings.prune_interval)
            await client.prune(table.live_endpoints())

    async def resources(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(prune_streams(), name="prune-shim-streams")]
        tasks += _renewals(shared)
        if redis_client is not None:
            dispatcher = Dispatcher(
                redis_client,
                invoker,
                settings.async_concurrency,
                settings.async_consumer,
                settings.async_key,
                retry_base=settings.async_retry_delay,
                queue_limit=settings.async_queue_limit,
            )
            app[DISPATCHER] = dispatcher
            pollers = EventSourcePollers(
                table,
                redis_client,
                invoker,
                Targets(redis_client, queue),
                settings.async_consumer or "gateway",
            )
            dispatching = asyncio.create_task(dispatcher.run(), name="async-dispatcher")
            assert queue is not None
            scheduler = Scheduler(table, redis_client, queue, metrics)
            tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
            tasks.append(asyncio.create_task(pollers.run(), name="event-source-pollers"))
        yield
        if redis_client is not None:
            app[DISPATCHER].stop()
            await asyncio.wait({dispatching}, timeout=DISPATCHER_STOP_TIMEOUT)
            tasks.append(dispatching)  # cancelled only if it did not stop by itself
        await cancel_and_wait(tasks)
        if redis_client is not None:
            await redis_client.aclose()
        await client.close()

    # Bodies are read by the handlers with Lambda's limits; aiohttp's own cap only backs it up.
    app = web.Application(
        middlewares=[shaped_errors, client_address, host_form_urls],
        client_max_size=settings.max_sync_payload + 1024 * 1024,
    )
    app[INVOKER] = invoker
    app[METRICS] = metrics
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/openapi.json", serve_openapi)
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke_api.handle)
    ControlPlane(invoker, settings, authenticator).mount(app)
    ProducerApi(table, redis_client, authenticator, settings.region, invoker.new_request_id).mount(
        app
    )
    app.router.add_route("*", PATH_PREFIX + "{url_id}", path_form_url)
    app.router.add_route("*", PATH_PREFIX + "{url_id}/{rest:.*}", path_form_url)
    app.cleanup_ctx.append(resources)
    return app
