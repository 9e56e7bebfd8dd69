"""Event sources end to end: records per second through queue and stream mappings, and a
stream's iterator age under steady load, each against a raw redis-py consumer of the same run.

    python bench/bench_sources.py [--records 4000] [--rate 2000] [--duration 10]

- Throughput: ``--records`` x batch size (capped at 40,000) messages are put on a queue (and
  records on a 4-shard stream) while its mapping is disabled; then the mapping (batchSize 1, 10
  or 100) is enabled and delivers them to a Python function, and the rate is the records after
  the first batch over the time from the first batch run to the last. Baseline: one raw
  redis-py XREADGROUP consumer (COUNT = the batch size, XACK per batch) draining a plain stream
  of as many entries (the median of three runs). Target: batch 100 >= 0.5x the raw consumer.
- Iterator age: records put on the stream at a steady ``--rate`` per second for
  ``--duration`` seconds; the function notes when each batch runs, and a record's age is that
  minus its arrival (p50, p99), against a raw XADD -> XREADGROUP consumer at the same rate.

Everything runs on this machine through ``klambda up`` (embedded Redis), as a user would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_async import Platform, paced, pct
from klambda.gateway.streams import Stream

BATCHES = (1, 10, 100)
SHARDS = 4
MOST_RECORDS = 40_000

SINK = """\
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: bench-sink}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 60
  environment: {variables: {OUT: "%(out)s"}}
  code:
    inline:
      app.py: |
        import os, time
        OUT = open(os.environ["OUT"], "a", buffering=1)
        def handler(event, context):
            now = time.time()
            records = event["Records"]
            if records[0].get("eventSource") == "aws:kinesis":
                source = records[0]["eventSourceARN"]
                born = [r["kinesis"]["approximateArrivalTimestamp"] for r in records]
            else:
                source = records[0]["eventSourceARN"]
                born = [int(r["attributes"]["SentTimestamp"]) / 1000 for r in records]
            OUT.write(f"{source.rsplit(':', 1)[-1].rsplit('/', 1)[-1]} {now} "
                      + " ".join(f"{now - b:.4f}" for b in born) + "\\n")
"""

SOURCES = """\
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: bench-q%(b)d}
spec: {visibilityTimeout: 60}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: bench-q%(b)d}
spec:
  enabled: %(enabled)s
  functionName: bench-sink
  batchSize: %(b)d
  maximumBatchingWindowInSeconds: %(window)d  # Lambda: over 10 needs a window (a backlog fills it)
  source: {queue: bench-q%(b)d}
---
apiVersion: klambda.io/v1alpha1
kind: Stream
metadata: {name: bench-s%(b)d}
spec: {shards: %(shards)d}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: bench-s%(b)d}
spec:
  enabled: %(enabled)s
  functionName: bench-sink
  batchSize: %(b)d
  startingPosition: TRIM_HORIZON
  source: {stream: bench-s%(b)d}
"""


class Sink:
    """The function's notes: per source, the batches' run times and each record's age."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.ran: dict[str, list[float]] = {}
        self.ages: dict[str, list[float]] = {}

    def read(self) -> None:
        with self.path.open() as f:
            f.seek(self.offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            source, now, *ages = line.split()
            self.ran.setdefault(source, []).append(float(now))
            self.ages.setdefault(source, []).extend(float(a) for a in ages)

    async def until(self, source: str, records: int, timeout: float = 300) -> float:
        """Waits until ``records`` of ``source`` ran; returns when the last batch ran."""
        deadline = time.monotonic() + timeout
        while len(self.ages.get(source, [])) < records:
            if time.monotonic() > deadline:
                got = len(self.ages.get(source, []))
                raise RuntimeError(f"{source}: {got} of {records} records ran in {timeout}s")
            await asyncio.sleep(0.05)
            await asyncio.to_thread(self.read)
        return max(self.ran[source])


async def fill_queue(client: aioredis.Redis, queue: str, n: int) -> None:
    key = f"klambda:queue:default:{queue}"
    for start in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                pipe.xadd(key, {"body": json.dumps({"n": i})})
            await pipe.execute()


async def fill_stream(client: aioredis.Redis, stream: str, n: int) -> None:
    target = Stream(client, f"klambda:stream:default:{stream}", SHARDS)
    for start in range(0, n, 1000):
        count = min(n, start + 1000) - start
        await target.put([(f"k{random.randrange(100)}", b'{"n": 1}') for _ in range(count)])


async def raw_throughput(url: str, n: int, batch: int) -> float:
    """A raw consumer draining ``n`` entries, ``batch`` at a time, acknowledging each batch."""
    client = aioredis.Redis.from_url(url)
    key = f"bench:raw:{batch}"
    await client.xgroup_create(key, "g", id="0", mkstream=True)
    for start in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(start, min(n, start + 1000)):
                pipe.xadd(key, {"body": '{"n": 1}'})
            await pipe.execute()
    done = 0
    started = time.monotonic()
    while done < n:
        reply = await client.xreadgroup("g", "c", {key: ">"}, count=batch, block=1000)
        for _, entries in reply or []:
            payload = json.dumps([json.loads(f[b"body"]) for _, f in entries])  # the work
            assert payload
            await client.xack(key, "g", *(i for i, _ in entries))
            done += len(entries)
    elapsed = time.monotonic() - started
    await client.delete(key)
    await client.aclose()
    return n / elapsed


def sources(batch: int, enabled: bool) -> str:
    flag = "true" if enabled else "false"
    return SOURCES % {"b": batch, "shards": SHARDS, "window": batch > 10, "enabled": flag}


async def apply(platform: Platform, tmp: Path, batch: int, enabled: bool) -> None:
    """Enables or disables the batch size's two mappings, as a user would (klambda apply)."""
    manifest = tmp / f"sources-{batch}.yaml"
    manifest.write_text(sources(batch, enabled))
    cli = [sys.executable, "-m", "klambda.cli.main", "apply", "-f", str(manifest)]
    done = await asyncio.to_thread(
        subprocess.run, [*cli, "--data-dir", str(platform.data_dir)], capture_output=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr.decode())


async def klambda_throughput(
    client: aioredis.Redis, sink: Sink, kind: str, batch: int, n: int, enable: Any
) -> float:
    """Records per second of a mapping draining ``n`` records put before it was enabled
    (``enable()``), from its first batch to its last."""
    name = f"bench-{kind}{batch}"
    before = len(sink.ages.get(name, []))
    await (fill_queue if kind == "q" else fill_stream)(client, name, n)
    await enable()
    await sink.until(name, before + n)
    runs = sink.ran[name][-math.ceil(n / batch) :]
    first, last = min(runs), max(runs)
    return (n - batch) / (last - first)


async def steady_stream(client: aioredis.Redis, sink: Sink, rate: float, seconds: float) -> None:
    name = "bench-s100"
    target = Stream(client, f"klambda:stream:default:{name}", SHARDS)
    before = len(sink.ages.get(name, []))
    chunk = 20  # records per put: 2,000/s is 100 puts of 20 a second

    async def put(_: int) -> None:
        await target.put([(f"k{random.randrange(100)}", b"{}") for _ in range(chunk)])

    await paced(rate / chunk, seconds, put)
    await sink.until(name, before + int(rate / chunk * seconds) * chunk)


async def raw_steady(url: str, rate: float, seconds: float) -> list[float]:
    producer, consumer = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    key = "bench:raw:steady"
    await producer.xgroup_create(key, "g", id="0", mkstream=True)
    chunk = 20
    total = int(rate / chunk * seconds) * chunk
    ages: list[float] = []

    async def consume() -> None:
        while len(ages) < total:
            reply = await consumer.xreadgroup("g", "c", {key: ">"}, count=100, block=500)
            now = time.time()
            for _, entries in reply or []:
                ages.extend(now - int(i.split(b"-")[0]) / 1000 for i, _ in entries)
                await consumer.xack(key, "g", *(i for i, _ in entries))

    async def put(_: int) -> None:
        async with producer.pipeline(transaction=False) as pipe:
            for _ in range(chunk):
                pipe.xadd(key, {"pk": "k", "data": "e30="})
            await pipe.execute()

    reader = asyncio.create_task(consume())
    await paced(rate / chunk, seconds, put)
    await asyncio.wait_for(reader, 60)
    await producer.delete(key)
    await producer.aclose()
    await consumer.aclose()
    return ages


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="klambda-bench-sources-"))
    out = tmp / "sink.txt"
    out.touch()
    manifest = tmp / "sources.yaml"
    manifest.write_text(SINK % {"out": out} + "".join(sources(b, True) for b in BATCHES))
    platform = Platform(tmp / "data", manifest)
    sink = Sink(out)
    client = aioredis.Redis.from_url(platform.state["redis_url"])
    results: dict[tuple[str, int], tuple[float, float]] = {}

    async def nothing() -> None:
        pass

    try:
        for kind in ("q", "s"):  # warm: environments started, pollers scaled up
            for b in BATCHES:
                await klambda_throughput(client, sink, kind, b, max(200, 2 * b), nothing)
        for b in BATCHES:
            n = min(MOST_RECORDS, args.records * b)
            raw = statistics.median(  # short runs: the median of three
                [await raw_throughput(platform.state["redis_url"], n, b) for _ in range(3)]
            )
            for kind in ("q", "s"):
                await apply(platform, tmp, b, enabled=False)
                await asyncio.sleep(2)  # the pollers have stopped

                async def enable(b: int = b) -> None:
                    await apply(platform, tmp, b, enabled=True)

                rate = await klambda_throughput(client, sink, kind, b, n, enable)
                results[(kind, b)] = (rate, raw)
        raw_ages = await raw_steady(platform.state["redis_url"], args.rate, args.duration)
        mark = len(sink.ages.get("bench-s100", []))
        await steady_stream(client, sink, args.rate, args.duration)
        ages = sink.ages["bench-s100"][mark:]
    finally:
        await client.aclose()
        platform.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"event sources, records per second end to end (machine: {os.cpu_count()} cores)")
    print(f"  {'':18} {'raw XREADGROUP':>15} {'queue':>10} {'stream':>10}  queue/raw stream/raw")
    for b in BATCHES:
        (queue, raw), (stream, _) = results[("q", b)], results[("s", b)]
        target = "  (target >= 0.5x)" if b == 100 else ""
        print(
            f"  batch {b:<12} {raw:13.0f}/s {queue:8.0f}/s {stream:8.0f}/s"
            f"  {queue / raw:8.2f}x {stream / raw:9.2f}x{target}"
        )
    print(f"stream iterator age at a steady {args.rate:g} records/s, {args.duration:g} s")
    print(
        f"  raw XADD->XREADGROUP    p50 {pct(raw_ages, 50) * 1000:7.1f} ms"
        f"   p99 {pct(raw_ages, 99) * 1000:7.1f} ms   (baseline)"
    )
    print(
        f"  klambda (batch 100)     p50 {pct(ages, 50) * 1000:7.1f} ms"
        f"   p99 {pct(ages, 99) * 1000:7.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4000, help="per unit of batch size")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
