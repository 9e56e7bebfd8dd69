"""The gateway <-> shim hop alone: grpc.aio's bidirectional stream against framed protobuf over
a plain TCP connection (asyncio streams), the same InvokeRequest/InvokeResponse messages.

    python bench/bench_shim_hop.py [--messages 20000] [--inflight 1,16]

Each transport gets an echo server in a process of its own (uvloop on both sides): it answers
every InvokeRequest with an InvokeResponse carrying the payload back. Prints messages/s
pipelined and the mean round trip at one in flight, and the framed/gRPC ratio: the numbers the
data path's transport was chosen by (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import struct
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAYLOAD = b'{"version":"2.0","rawPath":"/","headers":{"host":"x"},"body":"hello"}' * 8
HEADER = struct.Struct(">I")


T = TypeVar("T")


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main()`` on uvloop (asyncio's own loop without it); its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


# ----------------------------------------------------------------------------- servers


def grpc_server(port: int, ready: multiprocessing.synchronize.Event) -> None:
    import grpc

    from klambda.protos import SERVER_OPTIONS, shim_pb2, shim_pb2_grpc

    class Echo(shim_pb2_grpc.ShimServicer):
        async def InvokeStream(self, requests, context):  # type: ignore[no-untyped-def]
            async for r in requests:
                yield shim_pb2.InvokeResponse(request_id=r.request_id, payload=r.payload)

    async def main() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        shim_pb2_grpc.add_ShimServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    _run(main)


def framed_server(port: int, ready: multiprocessing.synchronize.Event) -> None:
    from klambda.protos import shim_pb2

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await reader.readexactly(4))
                r = shim_pb2.InvokeRequest.FromString(await reader.readexactly(size))
                out = shim_pb2.InvokeResponse(
                    request_id=r.request_id, payload=r.payload
                ).SerializeToString()
                writer.write(HEADER.pack(len(out)) + out)
        except asyncio.IncompleteReadError:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    _run(main)


# ----------------------------------------------------------------------------- clients


async def grpc_client(port: int, messages: int, inflight: int) -> float:
    import grpc

    from klambda.protos import CLIENT_OPTIONS, shim_pb2, shim_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CLIENT_OPTIONS) as ch:
        call = shim_pb2_grpc.ShimStub(ch).InvokeStream()
        pending: dict[str, asyncio.Future[object]] = {}

        async def read() -> None:
            async for answer in call:
                pending.pop(answer.request_id).set_result(answer)

        lock = asyncio.Lock()  # one write at a time, as the gateway's client does

        async def write(request: shim_pb2.InvokeRequest) -> None:
            async with lock:
                await call.write(request)

        reader = asyncio.create_task(read())
        return await _drive(messages, inflight, pending, write, reader)


async def framed_client(port: int, messages: int, inflight: int) -> float:
    from klambda.protos import shim_pb2

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pending: dict[str, asyncio.Future[object]] = {}

    async def read() -> None:
        while True:
            (size,) = HEADER.unpack(await reader.readexactly(4))
            answer = shim_pb2.InvokeResponse.FromString(await reader.readexactly(size))
            pending.pop(answer.request_id).set_result(answer)

    async def write(request: shim_pb2.InvokeRequest) -> None:
        data = request.SerializeToString()
        writer.write(HEADER.pack(len(data)) + data)

    task = asyncio.create_task(read())
    try:
        return await _drive(messages, inflight, pending, write, task)
    finally:
        writer.close()


async def _drive(
    messages: int,
    inflight: int,
    pending: dict[str, asyncio.Future[object]],
    write: Callable[..., object],
    reader: asyncio.Task[None],
) -> float:
    from klambda.protos import shim_pb2

    loop = asyncio.get_running_loop()
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < messages:
            sent += 1
            rid = f"req-{sent}"
            future = pending[rid] = loop.create_future()
            await write(shim_pb2.InvokeRequest(request_id=rid, payload=PAYLOAD))  # type: ignore[misc]
            await future

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    took = time.perf_counter() - started
    reader.cancel()
    return took


def measure(kind: str, messages: int, inflight: int, port: int) -> float:
    ready = multiprocessing.Event()
    target = grpc_server if kind == "grpc" else framed_server
    server = multiprocessing.Process(target=target, args=(port, ready), daemon=True)
    server.start()
    try:
        ready.wait(20)
        client = grpc_client if kind == "grpc" else framed_client
        return _run(lambda: client(port, messages, inflight))
    finally:
        server.terminate()
        server.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--inflight", default="1,16")
    args = parser.parse_args()
    import socket

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    print("| in flight | gRPC bidi stream | framed protobuf over TCP | framed / gRPC |")
    print("|---|---|---|---|")
    for inflight in (int(x) for x in args.inflight.split(",")):
        n = args.messages if inflight > 1 else args.messages // 4
        g = measure("grpc", n, inflight, free_port())
        f = measure("framed", n, inflight, free_port())
        if inflight == 1:
            print(
                f"| 1 | {g / n * 1e6:,.0f} us per round trip | {f / n * 1e6:,.0f} us | "
                f"{g / f:.1f}x faster |"
            )
        else:
            print(f"| {inflight} | {n / g:,.0f} msg/s | {n / f:,.0f} msg/s | {g / f:.1f}x |")


if __name__ == "__main__":
    main()
