"""The operator at scale, against the Kubernetes API double.

    python bench/bench_operator.py [--functions 1000] [--api-qps Q]

Creates N Functions and times how long the operator (``klambda operator``, a subprocess) takes
until every one reports Ready, against the baseline measured in the same run: the time the
same API server takes to accept the N creations themselves. Also prints the resident memory of
the operator and of the gateway (``klambda gateway``) before and after, per function.
The operator's own API budget (``--api-qps``, default 100/s) bounds it: the requests by kind
are printed, so a change that costs a request per function shows. Needs the test extras (the
API double lives in tests/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml

from klambda.kube.client import KubeClient, KubeConfig, path_for
from tests.helpers import free_port
from tests.kube.double import KubeApiDouble

IDLE_WINDOW = 20.0
FUNCTIONS = path_for("klambda.io", "v1alpha1", "functions", "default")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def function(i: int) -> dict[str, object]:
    return {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": f"f{i:05d}", "namespace": "default"},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "url": {"authType": "NONE"},
            "code": {"inline": {"app.py": f"def handler(e, c):\n    return {i}\n"}},
        },
    }


async def ready_count(client: KubeClient) -> int:
    items = (await client.list(FUNCTIONS)).get("items", [])
    return sum(
        1
        for f in items
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in f.get("status", {}).get("conditions", [])
        )
    )


async def main(n: int, api_qps: float | None) -> None:
    async with KubeApiDouble(history_size=100_000) as api:
        for path in sorted((ROOT / "charts/klambda/crds").glob("*.yaml")):
            api.create(yaml.safe_load(path.read_text()))
        await api.settle()
        tmp = Path(tempfile.mkdtemp())
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        cli = [sys.executable, "-m", "klambda.cli.main"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        logs = {name: open(tmp / f"{name}.log", "w") for name in ("operator", "gateway")}  # noqa: SIM115
        operator = subprocess.Popen(
            [
                *cli,
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                *(["--api-qps", str(api_qps)] if api_qps else []),
            ],
            env=env,
            stderr=logs["operator"],
        )
        gateway = subprocess.Popen(
            [
                *cli,
                "gateway",
                "--kubeconfig",
                str(kubeconfig),
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
            ],
            env=env,
            stderr=logs["gateway"],
        )
        try:
            await asyncio.sleep(3.0)
            base = (rss_mb(operator.pid), rss_mb(gateway.pid))
            t = time.perf_counter()
            for i in range(n):
                await client.create(FUNCTIONS, function(i))
            created = time.perf_counter() - t
            while (count := await ready_count(client)) < n:
                if operator.poll() is not None:
                    raise SystemExit(f"the operator exited; see {tmp / 'operator.log'}")
                print(f"  ... {count}/{n} Ready", end="\r", flush=True)
                await asyncio.sleep(2.0)  # listing N objects loads the double too
            ready = time.perf_counter() - t
            await asyncio.sleep(2.0)  # the gateway has seen every object too
            after = (rss_mb(operator.pid), rss_mb(gateway.pid))
            # with nothing changing: the periodic resync is all the operator does
            idle_cpu = cpu_seconds(operator.pid)
            await asyncio.sleep(IDLE_WINDOW)
            idle_cpu = (cpu_seconds(operator.pid) - idle_cpu) / IDLE_WINDOW
            theirs = [r for r in api.requests if not _bench_request(r, FUNCTIONS)]
            writes = sum(1 for r in theirs if r.method != "GET")
        finally:
            for proc in (operator, gateway):
                proc.send_signal(signal.SIGTERM)
            for proc in (operator, gateway):
                await asyncio.to_thread(proc.wait, 60)
            for f in logs.values():
                f.close()
            await client.close()
    print(f"{n} Functions against the API double (2 CPUs)")
    print(f"  create {n} Functions (baseline): {created:8.2f} s  {created / n * 1000:7.2f} ms each")
    print(
        f"  all Ready through the operator:  {ready:8.2f} s  {ready / n * 1000:7.2f} ms each"
        f"  ({ready / created:.1f}x the baseline)"
    )
    print(
        f"  API requests by operator and gateway: {len(theirs)} ({len(theirs) / n:.1f} per "
        f"function), of which writes {writes} ({writes / n:.1f} per function)"
    )
    kinds = Counter(f"{r.method} {_resource(r.path)}" for r in theirs)
    print("    " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    print(f"  operator CPU with nothing changing (resync): {idle_cpu * 100:.1f}% of a core")
    for label, b, a in (("operator", base[0], after[0]), ("gateway", base[1], after[1])):
        print(
            f"  {label} memory: {b:6.1f} MB idle, {a:6.1f} MB with {n}: "
            f"{(a - b) * 1024 / n:6.1f} KB per function"
        )


def _resource(path: str) -> str:
    """``/api/v1/namespaces/default/configmaps/x`` -> ``configmaps``; subresources kept."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return parts[0] + ("/" + parts[2] if len(parts) > 2 else "")


def _bench_request(r: Any, functions: str) -> bool:
    """The bench's own creations and readiness polls (lists of every Function)."""
    own_path = r.path.rstrip("/") == functions.rstrip("/")
    return own_path and (r.method == "POST" or (r.method == "GET" and "watch" not in r.query))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--api-qps", type=float, default=None, help="the operator's --api-qps")
    args = parser.parse_args()
    asyncio.run(main(args.functions, args.api_qps))
