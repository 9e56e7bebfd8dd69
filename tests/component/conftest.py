"""Fixtures of the component tests: real servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from klambda.controller.platform.redis_server import EmbeddedRedis


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A client of a real, embedded redis-server of this test's own."""
    server = await EmbeddedRedis.start(tmp_path / "redis")
    redis_client = aioredis.Redis.from_url(server.url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()
        await server.stop()
