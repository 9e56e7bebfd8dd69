"""A defect in a handler reaches the caller as Lambda's ServiceException, never as a
traceback or an unshaped 500 (the detail stays in the gateway's log)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from klambda.gateway.app import shaped_errors


async def test_an_unexpected_exception_is_a_shaped_service_exception() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("/secret/path/in/a/traceback")

    app = web.Application(middlewares=[shaped_errors])
    app.router.add_get("/x", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/x") as r:
            body = await r.text()
            assert r.status == 500
            assert r.headers["x-amzn-ErrorType"] == "ServiceException"
            assert "secret" not in body and "Traceback" not in body
            assert r.headers["x-amzn-RequestId"]
    finally:
        await runner.cleanup()
