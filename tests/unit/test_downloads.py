"""Code downloads, bounded: size (before and while streaming), allowed hosts, no redirects.

The operator fetches code.zip URLs for whoever may create a Function; a real HTTP server on
loopback plays the code host."""

from __future__ import annotations

import asyncio
import glob
import os
import tempfile
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from klambda.controller.downloads import CodeFetchFailed, download

LIMIT = 64 * 1024


@pytest.fixture
async def host() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def fixed(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(body=b"z" * int(request.match_info["n"]))

    async def streamed(request: web.Request) -> web.StreamResponse:
        """No Content-Length: only counting while reading finds the size."""
        seen.append(request.path)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(int(request.match_info["n"]) // 8192):
            await resp.write(b"z" * 8192)
        await resp.write_eof()
        return resp

    async def moved(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    app.router.add_get("/fixed/{n}", fixed)
    app.router.add_get("/streamed/{n}", streamed)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


def leftovers() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "klambda-zip-*"))


async def test_within_the_limit_is_kept_on_disk_and_hashed(host: tuple[str, list[str]]) -> None:
    base, _ = host
    archive = await download(f"{base}/streamed/{LIMIT}", LIMIT)
    try:
        assert archive.size == LIMIT and archive.temporary
        assert await asyncio.to_thread(archive.path.read_bytes) == b"z" * LIMIT
    finally:
        archive.discard()


@pytest.mark.parametrize("path", [f"/fixed/{LIMIT + 1}", f"/streamed/{LIMIT + 8192}"])
async def test_a_larger_answer_is_refused_and_nothing_is_kept(
    host: tuple[str, list[str]], path: str
) -> None:
    base, _ = host
    before = set(leftovers())
    with pytest.raises(CodeFetchFailed, match=f"larger than {LIMIT} bytes"):
        await download(base + path, LIMIT)
    assert set(leftovers()) == before


async def test_hosts_outside_the_allow_list_are_never_asked(host: tuple[str, list[str]]) -> None:
    base, seen = host
    with pytest.raises(CodeFetchFailed, match="not an allowed code host"):
        await download(f"{base}/fixed/10", LIMIT, allowed_hosts=("*.example.com",))
    assert seen == []
    archive = await download(f"{base}/fixed/10", LIMIT, allowed_hosts=("127.0.0.*",))
    archive.discard()


async def test_redirects_are_not_followed(host: tuple[str, list[str]]) -> None:
    """A redirect could lead past the allow-list (e.g. to a cloud metadata endpoint)."""
    base, _ = host
    with pytest.raises(CodeFetchFailed, match="answered HTTP 302"):
        await download(f"{base}/moved", LIMIT)
