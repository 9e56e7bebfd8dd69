"""``helm upgrade`` to a new chart version under steady load drops nothing: every Deployment
rolls (the image tag follows the chart's appVersion), gateway pods leave the Service, pause
(preStop), get SIGTERM and finish what they hold, the operator's leader hands its Lease on, and
meanwhile synchronous calls through the gateway Service keep answering 200 and every
asynchronous event accepted (202) runs. The chart's Deployments run as pods would
(``platform_kubelet.py``), on the API double with the process kubelet's function pods."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from tests.kube_e2e.test_operator_e2e import aws_client, eventually, secret

pytest.importorskip("helm_sdkpy", reason="helm-sdkpy is not installed")
from tests.kube.test_chart import CHART, NAMESPACE
from tests.kube_e2e.chart_platform import ChartPlatform, chart_platform

RECORDER = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: recorder}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 30
  url: {authType: NONE}
  environment: {variables: {OUT: "%s"}}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            # calls are in flight when a gateway is told to stop; slow ones outlast its pause
            time.sleep(float((event.get("queryStringParameters") or {}).get("sleep", 0.05)))
            if "n" in event:
                with open(os.environ["OUT"], "a") as f:
                    f.write(f"{event['n']}\\n")
            return "ok"
"""
KEY_ID, SECRET = "AKIAUPGRADETEST00001", "upgrade-test-secret"
SYNC_CALLERS, ASYNC_SENDERS = 4, 2
HELD = 15.0
"""Seconds the call held on each old gateway pod takes: it outlasts the pod's preStop pause
(5 s) and its SIGTERM, which comes once a new pod is ready."""
SETTLE = 3.0
"""Seconds of load before the upgrade and after the roll-out."""


# urllib3 may drop (without closing) a pooled connection a stopping gateway closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(300)
async def test_helm_upgrade_under_load_fails_no_call_and_loses_no_event(tmp_path: Path) -> None:
    async with chart_platform(tmp_path, gateway={"replicas": 2}) as p:
        out = tmp_path / "ran.txt"
        manifest = tmp_path / "recorder.yaml"
        manifest.write_text(RECORDER % out)
        await p.apply(manifest)
        await _principal(p)
        url = f"{p.gateway_url}/lambda-url/recorder/"
        await eventually(lambda: _sync_ok(url), 90, "recorder answers: " + p.logs())
        await eventually(
            lambda: asyncio.sleep(0, p.platform.rolled_out("klambda-gateway")), 60, "2 gateways"
        )
        load = Load(url, p.gateway_url)
        running = asyncio.gather(load.sync_callers(), asyncio.to_thread(load.async_senders))
        try:
            await asyncio.sleep(SETTLE)
            # a call in flight on each old gateway pod, through the roll-out: each gets its
            # SIGTERM with one running, and must finish it
            held = [
                asyncio.create_task(
                    load.call(f"http://{ip}:{port}/lambda-url/recorder/?sleep={HELD}")
                )
                for ip, port in p.platform.endpoints("klambda-gateway")
            ]
            began = time.monotonic()
            await p.upgrade(_next_version(tmp_path))

            async def rolled() -> bool:
                gone = {pod.deployment for pod in p.platform.gone}
                return {"klambda-gateway", "klambda-operator"} <= gone and all(
                    p.platform.rolled_out(d) for d in ("klambda-gateway", "klambda-operator")
                )

            await eventually(rolled, 120, "the upgrade rolled out: " + p.logs())
            rolled_in = time.monotonic() - began
            await asyncio.sleep(SETTLE)
        finally:
            load.stop.set()
            await running
        # the new operator pods lead: the old leader handed the Lease on as it stopped
        lease = await p.client.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/klambda-operator"
        )
        live = {
            pod.process.pid
            for pod in p.platform.pods
            if pod.deployment == "klambda-operator" and pod.process is not None
        }
        holder = lease["spec"]["holderIdentity"]
        assert int(holder.rpartition("-")[2]) in live, (holder, live)
        held_answers = await asyncio.gather(*held)
        await load.close()
        assert held_answers == [200, 200], load.errors

        def ran() -> Counter[int]:
            return Counter(int(x) for x in out.read_text().split()) if out.exists() else Counter()

        async def all_ran() -> bool:
            return load.accepted <= set(ran())

        await eventually(
            all_ran, 90, f"every accepted event ran; missing {load.accepted - set(ran())}"
        )
        failed = {k: v for k, v in load.sync.items() if k not in (200, 429)}
        total = sum(load.sync.values())
        assert not failed, f"synchronous calls failed: {failed} of {total}: {load.errors[:5]}"
        assert load.accepted and not load.refused, load.refused
        ended = [(pod.name, pod.exit_code, pod.killed) for pod in p.platform.gone]
        assert all(code == 0 and not killed for _, code, killed in ended), ended
        duplicates = sum(n - 1 for n in ran().values() if n > 1)
        calls = f"{sum(load.sync.values())} sync calls {dict(load.sync)}"
        events = f"{len(load.accepted)} async events accepted, all ran, {duplicates} twice"
        print(f"rolled out in {rolled_in:.1f} s ({len(ended)} pods replaced); {calls}; {events}")


def _next_version(tmp: Path) -> Path:
    """A copy of the chart one version on: its appVersion (the image tag) changes every
    Deployment's pod template, as a release does."""
    chart = tmp / "chart-next"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    major, minor, patch = (int(x) for x in str(meta["version"]).split("."))
    meta["version"] = meta["appVersion"] = f"{major}.{minor}.{patch + 1}"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return chart


async def _principal(p: ChartPlatform) -> None:
    allow = {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [allow]}
    await p.client.create(
        "/api/v1/namespaces/default/secrets",
        secret(
            "default",
            "upgrade-key",
            {"klambda.io/principal": "loader"},
            {"accessKeyId": KEY_ID, "secretAccessKey": SECRET, "policy": json.dumps(policy)},
        ),
    )


async def _sync_ok(url: str) -> bool:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status == 200


class Load:
    """Synchronous calls (a new connection each, as many clients make them) and asynchronous
    events (boto3, numbered), until ``stop``."""

    def __init__(self, url: str, gateway: str) -> None:
        self.url, self.gateway = url, gateway
        self.stop = asyncio.Event()
        self._stopped = threading.Event()
        self.sync: Counter[int | str] = Counter()
        self.accepted: set[int] = set()
        self.refused: list[str] = []
        self.errors: list[str] = []
        """What calls that did not answer 200 answered, and when."""
        self.began = time.monotonic()
        self._session: aiohttp.ClientSession
        self._next = 0
        self._lock = threading.Lock()

    async def close(self) -> None:
        await self._session.close()

    async def sync_callers(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        try:
            await asyncio.gather(*(self._caller() for _ in range(SYNC_CALLERS)))
        finally:
            self._stopped.set()

    async def _caller(self) -> None:
        while not self.stop.is_set():
            await self.call(self.url)

    async def call(self, url: str) -> int | str:
        """One synchronous call (a new connection): its status, or the client's error."""
        try:
            # POST: aiohttp retries an idempotent request once on a broken connection
            async with self._session.post(
                url, data=b"{}", timeout=aiohttp.ClientTimeout(total=60)
            ) as r:
                body = await r.read()
                outcome: int | str = r.status
        except (aiohttp.ClientError, TimeoutError) as e:
            outcome, body = type(e).__name__, b""
        self.sync[outcome] += 1
        if outcome != 200:
            at = time.monotonic() - self.began
            self.errors.append(f"{outcome} at {at:.1f} s {url}: {body[:200]!r}")
        return outcome

    def async_senders(self) -> None:
        threads = [threading.Thread(target=self._sender) for _ in range(ASYNC_SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _sender(self) -> None:
        lam: Any = aws_client("lambda", self.gateway, KEY_ID, SECRET, read_timeout=10)
        try:
            while not self._stopped.is_set():
                with self._lock:
                    n, self._next = self._next, self._next + 1
                try:
                    r = lam.invoke(
                        FunctionName="recorder",
                        InvocationType="Event",
                        Payload=json.dumps({"n": n}),
                    )
                except (BotoCoreError, ClientError) as e:
                    self.refused.append(f"{n}: {e}")
                    continue
                if r["StatusCode"] == 202:
                    with self._lock:
                        self.accepted.add(n)
                time.sleep(0.02)
        finally:
            lam.close()
