"""The gateway application factory: routes, host-form function URLs, metrics, cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from klambda.gateway.function_urls import PATH_PREFIX, FunctionUrls, host_url_id
from klambda.gateway.invoke_api import InvokeApi
from klambda.gateway.invoking import Activator, Invoker
from klambda.gateway.metrics import Metrics
from klambda.gateway.routing import RoutingTable
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shim_client import ShimClient

INVOKER = web.AppKey("invoker", Invoker)
METRICS = web.AppKey("metrics", Metrics)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: GatewaySettings, table: RoutingTable, activator: Activator | None = None
) -> web.Application:
    metrics = Metrics()
    client = ShimClient()
    invoker = Invoker(table, client, metrics, settings, activator)
    urls = FunctionUrls(invoker, settings)
    invoke_api = InvokeApi(invoker, settings)

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

    async def close_client(app: web.Application) -> AsyncIterator[None]:
        yield
        await client.close()

    # Bodies are read by the handlers with Lambda's limits; aiohttp's own cap only backs it up.
    app = web.Application(
        middlewares=[host_form_urls], client_max_size=settings.max_sync_payload + 1024 * 1024
    )
    app[INVOKER] = invoker
    app[METRICS] = metrics
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke_api.handle)
    app.router.add_route("*", PATH_PREFIX + "{url_id}", path_form_url)
    app.router.add_route("*", PATH_PREFIX + "{url_id}/{rest:.*}", path_form_url)
    app.cleanup_ctx.append(close_client)
    return app
