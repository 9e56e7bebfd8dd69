"""What the Lambda runtime client (awslambdaric) costs by itself: the floor under klambda's warm
path that any platform running unmodified Python runtimes pays.

    python bench/bench_runtime_client.py [--invocations 20000] [--processes 1,16]

N awslambdaric processes run a hello handler against a minimal Runtime API (asyncio + llhttp,
in this process) that always has an invocation ready with a function URL event; prints
invocations/s and the CPU (user + system, from /proc) per invocation of the runtimes and of the
server. Compare the runtimes' figure with the ``runtimes`` share that
``bench_function_url.py`` prints for klambda at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httptools

HANDLER = (
    "def handler(event, context):\n"
    '    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hello"}\n'
)
EVENT = (
    b'{"version":"2.0","routeKey":"$default","rawPath":"/","rawQueryString":"",'
    b'"headers":{"host":"127.0.0.1","user-agent":"wrk"},"requestContext":{"http":'
    b'{"method":"GET","path":"/","protocol":"HTTP/1.1","sourceIp":"127.0.0.1"}},'
    b'"body":"","isBase64Encoded":false}'
)
T = TypeVar("T")
ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
    b'{"status": "OK"}'
)


class Feeder(asyncio.Protocol):
    """Hands out an invocation on every /next and accepts every response, until ``limit``."""

    served = 0
    limit = 0
    mark = 0
    reached: asyncio.Event
    """Set when ``served`` reaches ``mark``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        if not self.url.endswith(b"/next"):
            self.transport.write(ACCEPTED)
            return
        if Feeder.served >= Feeder.limit:
            return  # the runtime waits; it is killed when the run ends
        Feeder.served += 1
        if Feeder.served >= Feeder.mark:
            Feeder.reached.set()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: r{Feeder.served}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {int(time.time() * 1000) + 60000}\r\n"
            "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:1:function:f\r\n"
            f"Content-Length: {len(EVENT)}\r\n\r\n"
        )
        self.transport.write(head.encode() + EVENT)


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def run(processes: int, invocations: int, code: Path) -> tuple[float, float, float]:
    Feeder.served, Feeder.limit = 0, invocations
    Feeder.mark, Feeder.reached = min(50 * processes, invocations // 10), asyncio.Event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Feeder, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "_HANDLER": "app.handler",
        "PYTHONPATH": str(code),
        "AWS_LAMBDA_FUNCTION_NAME": "f",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    }
    runtimes = [
        subprocess.Popen([sys.executable, "-m", "awslambdaric", "app.handler"], env=env, cwd=code)
        for _ in range(processes)
    ]
    try:
        await Feeder.reached.wait()  # every runtime started and served
        first, started = Feeder.served, time.perf_counter()
        before = [ticks(p.pid) for p in runtimes], ticks(os.getpid())
        Feeder.mark = invocations
        Feeder.reached.clear()
        await Feeder.reached.wait()
        took = time.perf_counter() - started
        after = [ticks(p.pid) for p in runtimes], ticks(os.getpid())
    finally:
        for p in runtimes:
            p.kill()
            p.wait()
        server.close()
    done = Feeder.served - first
    us = 1e6 / os.sysconf("SC_CLK_TCK") / done
    runtime_us = (sum(after[0]) - sum(before[0])) * us
    return done / took, runtime_us, (after[1] - before[1]) * us


def _loop_run(work: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=20000)
    parser.add_argument("--processes", default="1,16", help="comma-separated runtime counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "app.py").write_text(HANDLER)
        print("| runtimes | invocations/s | awslambdaric CPU per invocation | server CPU |")
        print("|---|---|---|---|")
        for n in (int(x) for x in args.processes.split(",")):
            rate, runtime_us, server_us = _loop_run(run(n, args.invocations, Path(tmp)))
            print(f"| {n} | {rate:,.0f} | {runtime_us:.0f} us | {server_us:.0f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
