"""Zip archives named by URL or path, fetched to disk within a size limit.

The operator fetches code on behalf of whoever may create a Function, so a download is
bounded three ways: by a host allow-list (``allowed_hosts``, shell patterns; a tenant must not
make the operator read internal endpoints into code they can then read), by size (checked
against Content-Length first, then while streaming, so an oversized answer is never held), and
by time. The archive goes to a temporary file, hashed as it arrives (Lambda's CodeSha256 is of
the archive's bytes), never into memory whole.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

CHUNK = 256 * 1024
TIMEOUT = 60.0


class CodeFetchFailed(Exception):
    """The code cannot be fetched or unpacked; the message says what to fix."""


@dataclass(frozen=True)
class Archive:
    """A zip on this machine's disk: ``temporary`` ones are removed by ``discard``."""

    path: Path
    sha256: str
    """Base64 SHA-256 of the archive's bytes (Lambda's CodeSha256)."""
    size: int
    temporary: bool = False

    def discard(self) -> None:
        if self.temporary:
            with contextlib.suppress(OSError):
                self.path.unlink()


def host_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed_hosts)


async def download(
    where: str,
    limit: int,
    allowed_hosts: tuple[str, ...] = ("*",),
    session: aiohttp.ClientSession | None = None,
) -> Archive:
    """The archive at ``where`` (an http(s) URL, or a local path / file:// URL), at most
    ``limit`` bytes; raises CodeFetchFailed saying why not."""
    if not where.startswith(("http://", "https://")):
        return await asyncio.to_thread(_local, Path(where.removeprefix("file://")), where, limit)
    if not host_allowed(where, allowed_hosts):
        raise CodeFetchFailed(
            f"{urlsplit(where).hostname} is not an allowed code host "
            f"(allowed: {', '.join(allowed_hosts) or 'none'})"
        )
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        return await _fetch(session, where, limit)
    except aiohttp.ClientError as e:
        raise CodeFetchFailed(f"cannot download {where}: {e}") from e
    except TimeoutError as e:
        raise CodeFetchFailed(f"downloading {where} took longer than {TIMEOUT:.0f} s") from e
    finally:
        if own:
            await session.close()


async def _fetch(session: aiohttp.ClientSession, where: str, limit: int) -> Archive:
    too_large = CodeFetchFailed(f"{where} is larger than {limit} bytes")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with session.get(where, timeout=timeout, allow_redirects=False) as resp:
        if resp.status != 200:
            raise CodeFetchFailed(f"GET {where} answered HTTP {resp.status}")
        if resp.content_length is not None and resp.content_length > limit:
            raise too_large
        fd, name = tempfile.mkstemp(prefix="klambda-zip-", suffix=".zip")
        path = Path(name)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)  # a syscall, not worth a thread
            raise
    return Archive(path, base64.b64encode(digest.digest()).decode(), size, temporary=True)


def _local(path: Path, where: str, limit: int) -> Archive:
    try:
        size = path.stat().st_size
        if size > limit:
            raise CodeFetchFailed(f"{where} is larger than {limit} bytes")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as e:
        raise CodeFetchFailed(f"cannot read zip {where}: {e.strerror}") from e
    return Archive(path, base64.b64encode(digest.digest()).decode(), size)
