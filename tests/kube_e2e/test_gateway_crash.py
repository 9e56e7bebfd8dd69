"""A gateway replica killed (SIGKILL) in the middle of a load: every asynchronous event it
answered 202 to still runs, through the other replica, which takes over the dead one's held
events once their visibility timeout passes (at least once: duplicates are counted, none is
lost); every queue message is delivered, those its pollers held too; and the concurrency slots
its calls held come back within the lease period. The killed gateway is a real process
(``klambda gateway``), as a pod of the chart's Deployment is; the other runs in the backend,
on the same API double and Redis, both with shared concurrency as the chart sets them."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.helpers import free_port
from tests.kube_e2e.test_operator_e2e import Cluster, aws_client, double_backend, secret

RECORDER = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: recorder}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%s"}}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            time.sleep(0.1)  # the doomed gateway is killed with invocations in flight
            numbers = [r["body"] for r in event["Records"]] if "Records" in event else [event["n"]]
            with open(os.environ["OUT"], "a") as f:
                f.write("".join(f"{n}\\n" for n in numbers))
            return numbers
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: work}
spec: {visibilityTimeout: 5}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: work}
spec: {functionName: recorder, source: {queue: work}, batchSize: 5}
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: capped}
spec:
  runtime: python3.11
  handler: app.handler
  reservedConcurrency: 2
  code:
    inline:
      app.py: |
        import time
        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return "ok"
"""
EVENTS = 120
KILL_AFTER = 30
MESSAGES = range(1000, 1060)
"""Queue messages: numbers of their own, recorded by the same function."""
"""Events the doomed gateway accepts before it is killed (more are on their way to it)."""
KEY_ID, SECRET = "AKIACRASHTEST0000001", "crash-test-secret"


def client(base: str) -> Any:
    return aws_client("lambda", base, KEY_ID, SECRET, connect_timeout=2, read_timeout=10)


# urllib3 drops (without closing) the connections a request to the killed gateway broke
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_gateway_killed_mid_load_loses_no_accepted_event(tmp_path: Path) -> None:
    async with double_backend(tmp_path, shared_concurrency=True) as c:
        c.double_only("the function writes to this machine's disk (a process kubelet pod)")
        out = tmp_path / "ran.txt"
        manifest = tmp_path / "recorder.yaml"
        manifest.write_text(RECORDER % out)
        await c.kubectl("apply", "-f", str(manifest))
        allow = {"Effect": "Allow", "Action": ["lambda:InvokeFunction", "sqs:*"], "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow]}
        await c.client.create(
            c.path("", "v1", "secrets"),
            secret(
                c.namespace,
                "crash-key",
                {"klambda.io/principal": "loader"},
                {"accessKeyId": KEY_ID, "secretAccessKey": SECRET, "policy": json.dumps(policy)},
            ),
        )
        doomed, base = _start_gateway(c, tmp_path)
        try:
            await _ready(c, base)
            # the doomed replica holds both of capped's slots when it dies
            holding = [asyncio.to_thread(_call, base, "capped", 30) for _ in range(2)]
            held = asyncio.gather(*holding, return_exceptions=True)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(_send_messages, c.gateway_url)
            accepted = await asyncio.to_thread(_load, c, base, doomed)
            killed = time.monotonic()
            # its slots are still held (their lease has not lapsed): the survivor throttles
            first = await asyncio.gather(
                *(asyncio.to_thread(_call, c.gateway_url, "capped", 0) for _ in range(2))
            )
            held_calls = await held
        finally:
            if doomed.poll() is None:
                doomed.kill()
            doomed.wait()
        assert doomed.returncode == -signal.SIGKILL
        by_doomed = len(accepted["doomed"])
        assert by_doomed >= KILL_AFTER, accepted  # it did take part of the load

        def ran() -> Counter[int]:
            found = Counter(int(x) for x in out.read_text().split()) if out.exists() else Counter()
            del found[-1]  # the readiness calls
            return found

        wanted = accepted["doomed"] | accepted["survivor"] | set(MESSAGES)
        assert "TooManyRequestsException" in first, first
        assert "ok" not in held_calls  # they were cut off with it
        # its slots come back once their lease (10 s) lapses: both of capped's run again

        async def slots_back() -> bool:
            answers = await asyncio.gather(
                *(asyncio.to_thread(_call, c.gateway_url, "capped", 0) for _ in range(2))
            )
            return answers == ["ok", "ok"]

        await c.eventually(slots_back, timeout=40, what="the dead replica's slots freed")
        freed = time.monotonic() - killed

        async def all_ran() -> bool:
            return wanted <= set(ran())

        # the survivor reclaims the dead replica's held events after their visibility timeout
        await c.eventually(all_ran, timeout=120, what="every accepted event ran")
        counts = ran()
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        gc.collect()  # the dropped connections' sockets go now, within this test's filter
        print(f"accepted {len(wanted) - len(MESSAGES)} events ({by_doomed} by the killed "
              f"gateway) and {len(MESSAGES)} messages; ran all; {duplicates} duplicates; "
              f"slots back {freed:.1f} s after the kill")  # fmt: skip


def _start_gateway(c: Cluster, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (tmp / "doomed-gateway.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "klambda.cli.main", "gateway",
            "--kubeconfig", str(c.kubeconfig), "--redis-url", str(c.redis_url),
            "--host", "127.0.0.1", "--port", str(port), "--shutdown-grace", "1",
            "--replica-name", "doomed",  # as a pod's name: not the survivor's (the host's)
            "--shared-concurrency",
        ],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    log.close()
    return process, f"http://127.0.0.1:{port}"


async def _ready(c: Cluster, base: str) -> None:
    """Both gateways invoke the function (its pod is up and each has its route)."""

    def invoked(url: str) -> bool:
        lam = client(url)
        try:
            r = lam.invoke(FunctionName="recorder", Payload=b'{"n": -1}')
        except (BotoCoreError, ClientError):
            return False
        finally:
            lam.close()
        return bool(r["StatusCode"] == 200 and "FunctionError" not in r)

    for url in (c.gateway_url, base):
        await c.eventually(
            lambda u=url: asyncio.to_thread(invoked, u), timeout=60, what=f"{url} invokes"
        )


def _load(c: Cluster, doomed_url: str, doomed: subprocess.Popen[bytes]) -> dict[str, set[int]]:
    """Sends EVENTS asynchronous invocations, 8 at a time: the first half to the doomed
    gateway, which is killed once it has accepted KILL_AFTER (its other calls fail or are
    refused: not accepted), the rest to the survivor. Returns what each accepted (202)."""
    accepted: dict[str, set[int]] = {"doomed": set(), "survivor": set()}
    lock = threading.Lock()
    clients = {"doomed": client(doomed_url), "survivor": client(c.gateway_url)}

    def send(n: int) -> None:
        who = "doomed" if n < EVENTS // 2 else "survivor"
        try:
            r = clients[who].invoke(
                FunctionName="recorder", InvocationType="Event", Payload=json.dumps({"n": n})
            )
        except (BotoCoreError, ClientError):
            return  # not accepted: a producer would retry
        if r["StatusCode"] == 202:
            with lock:
                accepted[who].add(n)
                if who == "doomed" and len(accepted[who]) == KILL_AFTER:
                    doomed.send_signal(signal.SIGKILL)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(EVENTS // 2)))
            time.sleep(0.5)
            list(pool.map(send, range(EVENTS // 2, EVENTS)))
    finally:
        for each in clients.values():
            each.close()
    return accepted


def _call(base: str, name: str, sleep: float) -> str:
    """One synchronous call: the function's answer, or the error's code."""
    lam = client(base)
    try:
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": sleep}))
        return str(json.loads(r["Payload"].read()))
    except ClientError as e:
        return str(e.response["Error"]["Code"])
    except BotoCoreError as e:
        return type(e).__name__
    finally:
        lam.close()


def _send_messages(base: str) -> None:
    """The queue's messages, sent with boto3's SQS client through the producer API."""
    sqs = aws_client("sqs", base, KEY_ID, SECRET)
    try:
        url = sqs.get_queue_url(QueueName="work")["QueueUrl"]
        for n in MESSAGES:
            sqs.send_message(QueueUrl=url, MessageBody=str(n))
    finally:
        sqs.close()
