"""Function URL throughput/latency and cold starts, each against a baseline from the same run.

    python bench/bench_function_url.py [--duration 5] [--connections 1,32] [--cold 30]

Warm path: a hello function served by ``klambda up`` through its function URL, and a bare
aiohttp hello server (the baseline), both loaded by wrk (or, without wrk, a Python client) with
the same settings; prints requests/s, p50 and p99 latency and the ratios.

Cold start: client latency of invocations that each need a new execution environment (idle
environments are reaped between calls), against the floor any Python Lambda runtime pays:
starting an interpreter that imports awslambdaric, measured here too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

HELLO_FUNCTION = """\
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: bench-hello}
spec:
  runtime: python3.11
  handler: app.handler
  memorySize: 128
  url: {authType: NONE}
  code:
    inline:
      app.py: |
        def handler(event, context):
            return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hello"}
"""

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def hello(request):
        return web.Response(text="hello")
    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- load


def wrk(
    url: str, connections: int, duration: float, script: Path | None = None
) -> tuple[float, float, float]:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            *(["-s", str(script)] if script else []),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _wrk_ms(re.search(r"50%\s+([\d.]+\w+)", out)[1])  # type: ignore[index]
    p99 = _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors[1]} failed responses under load")
    return rps, p50, p99


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def python_load(url: str, connections: int, duration: float) -> tuple[float, float, float]:
    import aiohttp

    async def run() -> tuple[float, float, float]:
        latencies: list[float] = []
        deadline = time.monotonic() + duration
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections)
        ) as session:

            async def worker() -> None:
                while time.monotonic() < deadline:
                    t = time.perf_counter()
                    async with session.get(url) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{url}: HTTP {r.status}")
                    latencies.append((time.perf_counter() - t) * 1000)

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.monotonic() - start
        return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)

    return asyncio.run(run())


def presigned_invoke(port: int, data_dir: Path, folder: Path) -> tuple[str, Path]:
    """The Invoke API's URL and a wrk script sending one SigV4-signed ``Invoke`` of the hello
    function again and again (a signature stays valid for 5 minutes): the Lambda API path
    under the same load as the function URL, with no signing cost in the load generator."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from klambda.api import sigv4

    state = json.loads((data_dir / "run" / "platform.json").read_text())
    path = "/2015-03-31/functions/bench-hello/invocations"
    headers = {"host": f"127.0.0.1:{port}", "content-type": "application/json"}
    signed = sigv4.sign(
        "POST",
        path,
        "",
        headers,
        b"{}",
        access_key_id=state["access_key_id"],
        secret=state["secret_access_key"],
        region=state["region"],
    )
    lines = ['wrk.method = "POST"', 'wrk.body = "{}"']
    sent = {"content-type": "application/json", **signed}  # wrk sends Host itself
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in sent.items()]
    script = folder / "invoke.lua"
    script.write_text("\n".join(lines) + "\n")
    return f"http://127.0.0.1:{port}{path}", script


def cpu_ticks(root: int) -> dict[str, int]:
    """CPU time (clock ticks, user + system) of a process tree by role: ``gateway`` (the
    ``klambda up`` process: gateway and controller), ``shim`` and ``runtimes``."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            ticks[int(entry)] = int(fields[11]) + int(fields[12])
    out = {"gateway": ticks.get(root, 0), "shim": 0, "runtimes": 0}
    tree, frontier = set(), {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    for pid in tree:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in command:
            continue
        out["shim" if b"klambda.shim" in command else "runtimes"] += ticks.get(pid, 0)
    return out


def cpu_split(before: dict[str, int], after: dict[str, int], requests: float) -> str:
    """Microseconds of CPU per request in each role between two ``cpu_ticks``."""
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    parts = [f"{k} {(after[k] - before[k]) * tick / requests:.0f}" for k in after]
    return "CPU per request (us): " + ", ".join(parts)


# --------------------------------------------------------------------------- cold starts


def cold_starts(url: str, count: int, keep_warm: float) -> list[float]:
    """Client latency of ``count`` calls that each start a new environment."""
    samples = []
    for _ in range(count):
        time.sleep(keep_warm * 4 + 0.3)  # the idle environment is reaped meanwhile
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def interpreter_floor(count: int) -> list[float]:
    """Starting a Python that imports awslambdaric's bootstrap: any Python runtime pays this."""
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import awslambdaric.bootstrap"], check=True)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def init_durations(metrics_url: str) -> tuple[float, int]:
    with urllib.request.urlopen(metrics_url) as r:
        text = r.read().decode()
    total = re.search(
        r'klambda_init_duration_seconds_sum\{function="bench-hello"[^}]*\} ([\d.e+-]+)', text
    )
    count = re.search(
        r'klambda_init_duration_seconds_count\{function="bench-hello"[^}]*\} ([\d.e+-]+)', text
    )
    if not total or not count:
        return 0.0, 0
    return float(total[1]) * 1000, int(float(count[1]))


def plot(
    runs: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]], path: Path
) -> None:
    """Throughput, and p50/p99 latency, against concurrency: klambda and the bare server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for index, name, style in ((0, "bare aiohttp", "--"), (1, "klambda function URL", "-")):
        left.plot(levels, [runs[c][index][0] for c in levels], style, marker="o", label=name)
        for at, marker in ((1, "o"), (2, "s")):
            right.plot(
                levels,
                [runs[c][index][at] for c in levels],
                style,
                marker=marker,
                label=f"{name}, p{50 if at == 1 else 99}",
            )
    left.set(xscale="log", xlabel="connections", ylabel="requests/s", title="Throughput")
    right.set(xscale="log", yscale="log", xlabel="connections", ylabel="ms", title="Latency (wrk)")
    for ax in (left, right):
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Warm path through a function URL, klambda up on 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


# --------------------------------------------------------------------------- main


def row(label: str, values: tuple[float, ...]) -> None:
    """One table row: req/s then latencies (warm path), or latencies only (cold start)."""
    cells = [f"{values[0]:>10.0f}"] if len(values) == 3 else []
    cells += [f"{v:>10.2f}" for v in values[len(cells) :]]
    print(f"  {label:<32}" + "".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--connections", default="1,32", help="comma-separated concurrency levels")
    parser.add_argument("--cold", type=int, default=30, help="cold starts to sample")
    parser.add_argument(
        "--plot", help="write a PNG of throughput and p50/p99 against concurrency here"
    )
    args = parser.parse_args()
    load = wrk if shutil.which("wrk") else python_load
    keep_warm = 0.2

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp, "hello.yaml")
        manifest.write_text(HELLO_FUNCTION)
        kl_port, bare_port = free_port(), free_port()
        klambda = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                "up",
                "--data-dir",
                str(Path(tmp, "data")),
                "--port",
                str(kl_port),
                "-f",
                str(manifest),
                "--keep-warm",
                "300",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        try:
            fn_url = f"http://127.0.0.1:{kl_port}/lambda-url/bench-hello/"
            bare_url = f"http://127.0.0.1:{bare_port}/"
            wait_http(fn_url)
            wait_http(bare_url)
            print(
                f"load generator: {'wrk' if load is wrk else 'python aiohttp client'}; "
                f"{args.duration:.0f} s per run; {os.cpu_count()} CPUs"
            )
            print(f"{'warm path':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
            runs: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
            for c in [int(x) for x in args.connections.split(",")]:
                load(fn_url, c, 1.0)  # warm-up: environments started, connections open
                base = load(bare_url, c, args.duration)
                before = cpu_ticks(klambda.pid)
                ours = load(fn_url, c, args.duration)
                split = cpu_split(before, cpu_ticks(klambda.pid), ours[0] * args.duration)
                row(f"bare aiohttp hello, c={c}", base)
                row(f"klambda function URL, c={c}", ours)
                ratios = (ours[0] / base[0], ours[1] / base[1], ours[2] / base[2])
                print(f"  {'ratio (klambda / bare)':<32}" + "".join(f"{r:>9.2f}x" for r in ratios))
                added = ours[1] - base[1]
                print(f"  added p50: {added:+.2f} ms; {split}")
                runs[c] = (base, ours)
            if load is wrk:
                c = max(runs)
                invoke_url, script = presigned_invoke(kl_port, Path(tmp, "data"), Path(tmp))
                wrk(invoke_url, c, 1.0, script)  # warm-up
                invoked = wrk(invoke_url, c, args.duration, script)
                row(f"klambda Invoke API, c={c}", invoked)
                print(f"  Invoke API / function URL: {invoked[0] / runs[c][1][0]:.2f}x throughput")
            if args.plot:
                plot(runs, Path(args.plot))
        finally:
            bare.send_signal(signal.SIGINT)
            klambda.send_signal(signal.SIGINT)
            bare.wait(30)
            klambda.wait(60)

        if not args.cold:
            return 0
        # Cold starts on a platform whose idle environments are reaped quickly.
        klambda = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                "up",
                "--data-dir",
                str(Path(tmp, "data2")),
                "--port",
                str(kl_port),
                "-f",
                str(manifest),
                "--keep-warm",
                str(keep_warm),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(fn_url)
            _, before = init_durations(f"http://127.0.0.1:{kl_port}/metrics")
            cold = cold_starts(fn_url, args.cold, keep_warm)
            init_ms, inits = init_durations(f"http://127.0.0.1:{kl_port}/metrics")
            floor = interpreter_floor(args.cold)
        finally:
            klambda.send_signal(signal.SIGINT)
            klambda.wait(60)
    if inits - before != args.cold:
        print(f"warning: {inits - before} of {args.cold} calls were cold starts")
    print(f"{'cold start':<34}{'p50 ms':>10}{'p99 ms':>10}")
    cold_ms = (percentile(cold, 0.5), percentile(cold, 0.99))
    floor_ms = (percentile(floor, 0.5), percentile(floor, 0.99))
    row("klambda new environment (client)", cold_ms)
    row("python + import awslambdaric", floor_ms)
    cold_ratios = (cold_ms[0] / floor_ms[0], cold_ms[1] / floor_ms[1])
    print(f"  {'ratio (klambda / floor)':<32}" + "".join(f"{r:>9.2f}x" for r in cold_ratios))
    print(
        f"  mean Init Duration reported: {init_ms / max(inits, 1):.1f} ms over {inits} cold starts"
    )
    print(json.dumps({"cold_p50_ms": round(statistics.median(cold), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
