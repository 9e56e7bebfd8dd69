"""Reading request bodies within Lambda's payload limits."""

from __future__ import annotations

from aiohttp import web

from klambda.gateway.errors import RequestTooLarge


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or RequestTooLarge without reading more than ``limit`` + one chunk."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
