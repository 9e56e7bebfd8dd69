"""Log streams: one file per execution environment, as Lambda has one stream per environment.

The runtime's stdout and stderr are the stream's file itself (the process inherits the fd), so
the function's output needs no copying and lands between the platform's START and END lines:
the runtime has written it before it posts its response.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 4096


def stream_name(version: str, now: float | None = None) -> str:
    """Lambda's stream name: ``YYYY/MM/DD/[<version>]<32 hex>``."""
    day = time.strftime("%Y/%m/%d", time.gmtime(time.time() if now is None else now))
    return f"{day}/[{version}]{secrets.token_hex(16)}"


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def billed_ms(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def report_line(
    request_id: str,
    duration_ms: float,
    memory_size: int,
    max_memory_used: int,
    init_duration_ms: float | None = None,
) -> str:
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms)} ms",
        f"Memory Size: {memory_size} MB",
        f"Max Memory Used: {max_memory_used} MB",
    ]
    if init_duration_ms is not None:
        parts.append(f"Init Duration: {init_duration_ms:.2f} ms")
    return "\t".join(parts) + "\t\n"


@dataclass
class LogStream:
    """An open log stream file; the runtime process writes to ``fd`` too."""

    name: str
    path: Path
    fd: int

    @classmethod
    def open(cls, log_dir: str | Path, version: str) -> LogStream:
        name = stream_name(version)
        path = Path(log_dir, name.replace("/", "-") + ".log")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        return cls(name, path, fd)

    def write(self, text: str) -> None:
        # A few hundred bytes to a local file: page-cache fast, not worth a thread hop.
        os.write(self.fd, text.encode())

    def offset(self) -> int:
        return os.fstat(self.fd).st_size

    def tail(self, since: int, limit: int = TAIL_BYTES) -> bytes:
        """The last ``limit`` bytes written after offset ``since`` (X-Amz-Log-Type: Tail)."""
        end = self.offset()
        start = max(since, end - limit)
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


FOLLOW_SECONDS = 0.2
FOLLOW_KEEP_BYTES = 1024 * 1024


async def follow(
    stream: LogStream,
    out_fd: int,
    idle: Callable[[], bool],
    period: float = FOLLOW_SECONDS,
    keep: int = FOLLOW_KEEP_BYTES,
) -> None:
    """Copies what the stream's file gains to ``out_fd`` (the pod's stdout, for ``kubectl logs``)
    until cancelled, then copies the rest: ``tail -f``, so the runtime's writes stay direct.

    Once more than ``keep`` bytes are copied and the environment is ``idle`` (between
    invocations, so no Tail offset points into the file), the file is emptied: a long-lived pod
    must not fill its disk with what stdout already has.
    """
    sent = 0
    try:
        while True:  # a thread: up to a megabyte each time, and stdout may be slow to take it
            sent = await asyncio.to_thread(_copy, stream.path, sent, out_fd)
            if sent > keep and idle() and os.fstat(stream.fd).st_size == sent:
                os.ftruncate(stream.fd, 0)  # the runtime's fd is O_APPEND: it writes at 0 next
                sent = 0
            await asyncio.sleep(period)
    finally:  # the rest: little, since the last copy at most ``period`` ago
        with contextlib.suppress(OSError):
            _copy(stream.path, sent, out_fd)


def _copy(path: Path, since: int, out_fd: int) -> int:
    with open(path, "rb") as f:
        f.seek(since)
        data = f.read()
    if data:
        os.write(out_fd, data)
    return since + len(data)
