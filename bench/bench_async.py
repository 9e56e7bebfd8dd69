"""Asynchronous invocation: intake rate and dispatch lag, each against a baseline of the same run.

    python bench/bench_async.py [--duration 5] [--connections 16] [--rate 500]

- Intake: SigV4-signed ``Invoke`` calls with ``InvocationType: Event`` (202s per second) from
  ``--connections`` concurrent clients, against the same clients' synchronous warm invocations
  of the same function (target: intake >= 0.5x the sync rate), and against raw redis-py XADDs
  to the same Redis.
- Dispatch lag: events sent at a steady ``--rate`` per second; the function notes when it runs
  each one, and lag is that minus the time its 202 arrived (p50, p99; target p99 <= 100 ms at
  500 events/s), against a raw redis-py XADD -> XREADGROUP consumer at the same rate.

Everything runs on this machine through ``klambda up`` (embedded Redis), as a user would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_function_url import free_port, wait_http
from klambda.api import sigv4

FUNCTIONS = """\
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: bench-sink}
spec:
  runtime: python3.11
  handler: app.handler
  code:
    inline:
      app.py: |
        def handler(event, context):
            return None
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: bench-lag}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(out)s"}}
  code:
    inline:
      app.py: |
        import os, time
        OUT = open(os.environ["OUT"], "a", buffering=1)
        def handler(event, context):
            OUT.write(f"{event['id']} {time.time()}\\n")
"""


class Platform:
    def __init__(self, data_dir: Path, manifest: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "-f",
                str(manifest),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        state = data_dir / "run" / "platform.json"
        deadline = time.monotonic() + 90
        while not state.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("klambda up did not start")
            time.sleep(0.1)
        wait_http(f"http://127.0.0.1:{self.port}/metrics")
        self.state = json.loads(state.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def signed(self, function: str, body: bytes, event: bool) -> tuple[str, dict[str, str]]:
        path = f"/2015-03-31/functions/{function}/invocations"
        headers = {"host": f"127.0.0.1:{self.port}", "content-type": "application/json"}
        if event:
            headers["x-amz-invocation-type"] = "Event"
        headers.update(
            sigv4.sign(
                "POST",
                path,
                "",
                headers,
                body,
                access_key_id=self.state["access_key_id"],
                secret=self.state["secret_access_key"],
                region="us-east-1",
            )
        )
        return self.url + path, headers


async def rate(
    platform: Platform,
    event: bool,
    seconds: float,
    connections: int,
    function: str = "bench-sink",
    body: bytes = b"{}",
) -> float:
    """Invocations per second of ``function`` (sync) or 202s per second (event)."""
    done = 0
    stop = time.monotonic() + seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < stop:
            url, headers = platform.signed(function, body, event)
            async with http.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status != (202 if event else 200):
                    raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
            done += 1

    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        await asyncio.gather(*(worker(http) for _ in range(connections)))
        return done / (time.monotonic() - start)


async def raw_xadd_rate(url: str, seconds: float, connections: int) -> float:
    client = aioredis.Redis.from_url(url)
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await client.xadd("bench:raw", {"event": "{}"})
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.monotonic() - start
    await client.delete("bench:raw")
    await client.aclose()
    return done / elapsed


async def paced(per_second: float, seconds: float, send: Any) -> None:
    """Calls ``send(i)`` at a steady rate (each as its own task, so a slow one does not hold
    back the schedule)."""
    tasks = []
    start = time.monotonic()
    for i in range(int(per_second * seconds)):
        delay = start + i / per_second - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)


async def lag(
    platform: Platform, out: Path, per_second: float, seconds: float, first: int = 0
) -> list[float]:
    """Dispatch lags of events sent at ``per_second`` (ids from ``first``, unique per run)."""
    accepted: dict[int, float] = {}
    refused: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def send(i: int) -> None:
            i += first
            body = json.dumps({"id": i}).encode()
            url, headers = platform.signed("bench-lag", body, event=True)
            async with http.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status == 202:
                    accepted[i] = time.time()
                else:
                    refused[r.status] += 1

        await paced(per_second, seconds, send)
    deadline = time.monotonic() + 60
    ran: dict[int, float] = {}
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(out.read_text)
        found = {int(a): float(b) for a, b in (x.split() for x in text.splitlines())}
        ran = {i: t for i, t in found.items() if i in accepted}
        if len(ran) == len(accepted):
            break
        await asyncio.sleep(0.2)
    if refused or len(ran) < len(accepted):
        print(
            f"  at {per_second:g}/s: {dict(refused)} refused, {len(accepted) - len(ran)} "
            "accepted but not run within 60 s"
        )
    return [max(0.0, ran[i] - accepted[i]) for i in accepted if i in ran]


async def raw_lag(url: str, per_second: float, seconds: float) -> list[float]:
    producer, consumer = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    await producer.xgroup_create("bench:lag", "g", id="0", mkstream=True)
    lags: list[float] = []
    total = int(per_second * seconds)

    async def consume() -> None:
        while len(lags) < total:
            reply = await consumer.xreadgroup("g", "c", {"bench:lag": ">"}, count=64, block=500)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    lags.append(time.time() - float(fields[b"t"]))
                    await consumer.xack("bench:lag", "g", entry_id)

    async def send(i: int) -> None:
        await producer.xadd("bench:lag", {"t": repr(time.time())})

    reader = asyncio.create_task(consume())
    await paced(per_second, seconds, send)
    await asyncio.wait_for(reader, 30)
    await producer.delete("bench:lag")
    await producer.aclose()
    await consumer.aclose()
    return lags


async def drained(url: str, timeout: float = 120) -> None:
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while int(await cast("Awaitable[bytes | None]", client.hget(QUEUED, "default")) or 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the async queue did not drain")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


QUEUED = "klambda:async:queued"


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


async def main(args: argparse.Namespace) -> None:
    rates = [float(r) for r in args.sweep.split(",")] if args.sweep else [args.rate]
    tmp = Path(tempfile.mkdtemp(prefix="klambda-bench-async-"))
    out = tmp / "lag.txt"
    out.touch()
    manifest = tmp / "functions.yaml"
    manifest.write_text(FUNCTIONS % {"out": out})
    platform = Platform(tmp / "data", manifest)
    lags: dict[float, tuple[list[float], list[float]]] = {}
    try:
        await rate(platform, False, 1.0, args.connections)  # warm the environments
        sync = await rate(platform, False, args.duration, args.connections)
        intake = await rate(platform, True, args.duration, args.connections)
        raw = await raw_xadd_rate(platform.state["redis_url"], args.duration, args.connections)
        await drained(platform.state["redis_url"])  # the intake's events are all delivered
        # environments of bench-lag warm, as many as the dispatcher runs at once (a cold start
        # is an init, not dispatch lag)
        await rate(platform, False, 2.0, 16, "bench-lag", b'{"id": -1}')
        for n, per_second in enumerate(rates):
            raw_lags = await raw_lag(platform.state["redis_url"], per_second, args.duration)
            ours = await lag(platform, out, per_second, args.duration, first=n * 10**6)
            lags[per_second] = (raw_lags, ours)
            await drained(platform.state["redis_url"])
    finally:
        platform.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"async intake, {args.connections} connections, {args.duration:g} s each (machine: "
        f"{os.cpu_count()} cores)"
    )
    print(f"  sync warm invocations   {sync:8.0f}/s   (baseline)")
    print(
        f"  async 202s              {intake:8.0f}/s   ratio {intake / sync:.2f}x  (target >= 0.5x)"
    )
    print(f"  raw redis-py XADD       {raw:8.0f}/s   klambda/raw {intake / raw:.2f}x")
    for per_second, (raw_lags, ours) in lags.items():
        sent = int(per_second * args.duration)
        print(f"dispatch lag at {per_second:g} events/s ({len(ours)} of {sent} events ran)")
        print(
            f"  raw XADD->XREADGROUP    p50 {pct(raw_lags, 50) * 1000:6.1f} ms"
            f"   p99 {pct(raw_lags, 99) * 1000:6.1f} ms   (baseline)"
        )
        print(
            f"  klambda 202->invoked    p50 {pct(ours, 50) * 1000:6.1f} ms"
            f"   p99 {pct(ours, 99) * 1000:6.1f} ms   (target p99 <= 100 ms at 500/s)"
        )
    if args.plot:
        plot(lags, Path(args.plot))


def plot(lags: dict[float, tuple[list[float], list[float]]], path: Path) -> None:
    """p50 and p99 dispatch lag against the rate, klambda and the raw baseline (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted(lags)
    fig, ax = plt.subplots(figsize=(7, 4))
    for which, style in ((1, "-"), (0, "--")):
        name = "klambda 202 -> invoked" if which else "raw XADD -> XREADGROUP"
        for p, marker in ((50, "o"), (99, "s")):
            values = [pct(lags[r][which], p) * 1000 for r in rates]
            ax.plot(rates, values, style, marker=marker, label=f"{name}, p{p}")
    ax.axhline(100, color="grey", linewidth=0.8)
    ax.annotate("target p99 100 ms", (rates[0], 110), color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("events per second (steady)")
    ax.set_ylabel("dispatch lag (ms)")
    ax.set_title("Async dispatch lag, klambda up on 2 cores")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--sweep", help="comma-separated rates to measure lag at, e.g. 100,300,500")
    parser.add_argument("--plot", help="write a PNG of lag against rate here (needs matplotlib)")
    asyncio.run(main(parser.parse_args()))
