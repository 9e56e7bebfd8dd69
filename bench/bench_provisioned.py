"""Provisioned concurrency: latency against cold starts, and time to N ready environments.

    python bench/bench_provisioned.py [--samples 30] [--sizes 1,10,50]

1. Invocation latency through the Invoke API after the same idle gap, p50/p99: on $LATEST with
   idle environments reaped (every call a cold start), and on an alias with provisioned
   concurrency (every call served by a pre-initialised environment). Ratio cold / provisioned.
2. Time from applying an alias with provisionedConcurrency N to N ready environments (as its
   status reports them), against the floor measured in the same run: starting N interpreters
   that import awslambdaric's bootstrap, all at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_function_url import free_port, percentile, row

from klambda.api import sigv4

FUNCTION = """\
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: bench-pc}
spec:
  runtime: python3.11
  handler: app.handler
  code:
    inline:
      app.py: |
        def handler(event, context):
            return {"ok": True}
"""

ALIAS = """\
apiVersion: klambda.io/v1alpha1
kind: Alias
metadata: {name: %(name)s}
spec: {functionName: bench-pc, functionVersion: "1", provisionedConcurrency: %(n)d}
"""


class Admin:
    def __init__(self, data_dir: Path) -> None:
        state = json.loads((data_dir / "run" / "platform.json").read_text())
        self.url, self.token, self.gateway = (
            state["admin_url"],
            state["admin_token"],
            state["gateway_url"],
        )
        self.key = (state["access_key_id"], state["secret_access_key"])

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def apply(self, text: str) -> None:
        import yaml

        self.call("POST", "/v1/apply", {"objects": list(yaml.safe_load_all(text))})

    def invoke_ms(self, qualifier: str | None = None) -> float:
        path = "/2015-03-31/functions/bench-pc/invocations"
        query = f"Qualifier={qualifier}" if qualifier else ""
        t = time.perf_counter()
        headers = sigv4.sign(
            "POST",
            path,
            query,
            {"host": self.gateway.removeprefix("http://")},
            b"{}",
            access_key_id=self.key[0],
            secret=self.key[1],
            region="us-east-1",
        )
        url = f"{self.gateway}{path}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=b"{}", headers=headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            assert r.status == 200
        return (time.perf_counter() - t) * 1000

    def ready(self, alias: str) -> int:
        obj = self.call("GET", f"/v1/objects/alias/default/{alias}")
        return int(obj.get("status", {}).get("provisionedConcurrency", {}).get("ready", 0))


def wait(check: Any, timeout: float = 120.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(interval)


def interpreters_at_once(n: int) -> float:
    t = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", "import awslambdaric.bootstrap"]) for _ in range(n)
    ]
    for p in procs:
        p.wait()
    return (time.perf_counter() - t) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--sizes", default="1,10,50")
    args = parser.parse_args()
    keep_warm = 0.2
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        manifest = Path(tmp, "fn.yaml")
        manifest.write_text(FUNCTION)
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                "up",
                "--data-dir",
                str(data),
                "--port",
                str(free_port()),
                "-f",
                str(manifest),
                "--keep-warm",
                str(keep_warm),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait(lambda: (data / "run" / "platform.json").exists(), 60)
            admin = Admin(data)
            wait(lambda: _ok(admin.invoke_ms))
            version = admin.call(
                "POST", "/v1/publish", {"namespace": "default", "function": "bench-pc"}
            )["version"]
            assert version == "1", version
            admin.apply(ALIAS % {"name": "warm", "n": 1})
            wait(lambda: admin.ready("warm") == 1)
            cold, warm = [], []
            for _ in range(args.samples):
                time.sleep(keep_warm * 4 + 0.3)  # on-demand environments are reaped meanwhile
                cold.append(admin.invoke_ms())
                warm.append(admin.invoke_ms("warm"))
            print(f"{'latency after an idle gap':<34}{'p50 ms':>10}{'p99 ms':>10}")
            cold_p = (percentile(cold, 0.5), percentile(cold, 0.99))
            warm_p = (percentile(warm, 0.5), percentile(warm, 0.99))
            row("cold start ($LATEST)", cold_p)
            row("provisioned (alias, PC=1)", warm_p)
            ratios = (cold_p[0] / warm_p[0], cold_p[1] / warm_p[1])
            print(f"  {'ratio (cold / provisioned)':<32}" + "".join(f"{r:>9.1f}x" for r in ratios))

            print(f"{'time to N ready environments':<34}{'klambda':>10}{'floor':>10}{'ratio':>10}")
            for n in [int(x) for x in args.sizes.split(",")]:
                name = f"pc{n}"
                t = time.perf_counter()
                admin.apply(ALIAS % {"name": name, "n": n})
                wait(lambda name=name, n=n: admin.ready(name) == n)
                ours = (time.perf_counter() - t) * 1000
                admin.apply(ALIAS % {"name": name, "n": 0})  # release them before the next size
                floor = interpreters_at_once(n)
                print(f"  {f'N={n} (ms)':<32}{ours:>10.0f}{floor:>10.0f}{ours / floor:>9.2f}x")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    return 0


def _ok(call: Any) -> bool:
    try:
        call()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
