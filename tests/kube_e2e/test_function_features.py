"""Secret-backed environment variables and container image functions, through kubectl, the
operator, the pods and the gateway (the API double with the process kubelet, or a real cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from botocore.exceptions import ClientError

from klambda.api.arn import account_for
from tests.kube_e2e import kubelet
from tests.kube_e2e.test_operator_e2e import (  # noqa: F401 (cluster: the fixture)
    KEEP_WARM,
    Cluster,
    aws_client,
    cluster,
    secret,
)

SECRET_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: secretive}
spec:
  runtime: python3.11
  handler: app.handler
  url: {authType: NONE}
  environment:
    secretRefs:
      DB_PASSWORD: {name: db-credentials, key: password}
  code:
    inline:
      app.py: |
        import os
        def handler(event, context):
            return {"statusCode": 200, "body": os.environ["DB_PASSWORD"]}
"""

SECRET = """apiVersion: v1
kind: Secret
metadata: {name: db-credentials}
stringData: {password: hunter2}
"""

IMAGE = "registry.test/klambda-e2e/counter:1"
IMAGE_FUNCTION = f"""apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {{name: imaged}}
spec:
  code: {{image: {IMAGE}}}
  imageConfig: {{command: [app.handler]}}
  timeout: 1
  url: {{authType: NONE}}
"""

IMAGE_APP = """
import json, os, time
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    if "sleep" in (event.get("rawQueryString") or ""):
        time.sleep(30)
    body = {"count": COUNT, "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}
    return {"statusCode": 200, "body": json.dumps(body)}
"""


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url, timeout=aiohttp.ClientTimeout(total=40)) as r,
    ):
        return r.status, await r.text()


async def test_secret_values_reach_the_function(cluster: Cluster) -> None:  # noqa: F811
    manifest = cluster.tmp / "secretive.yaml"
    manifest.write_text(SECRET + "---\n" + SECRET_FUNCTION)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def answer() -> str | None:
        status, body = await get(cluster.url("secretive"))
        return body if status == 200 else None

    assert await cluster.eventually(answer, timeout=60, what="HTTP 200 from secretive") == (
        "hunter2"
    )
    _, out, _ = await cluster.kubectl("get", "deployment", "fn-secretive-latest", "-o", "json")
    assert "hunter2" not in out  # a secretKeyRef, never the value


async def test_container_image_function(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image's own process serves the function; after a timeout the shim fails the
    container's liveness probe, so the kubelet restarts it and the next call is served fresh."""
    cluster.double_only("the image exists only in the process kubelet's registry")
    code = tmp_path / "image"
    code.mkdir()
    (code / "app.py").write_text(IMAGE_APP)
    run = kubelet.ImageRun(
        entrypoint=[sys.executable, "-m", "awslambdaric"],
        workdir=str(code),
        env={"PYTHONPATH": str(code), "LAMBDA_TASK_ROOT": str(code)},
    )
    monkeypatch.setitem(kubelet.IMAGES, IMAGE, run)
    manifest = cluster.tmp / "imaged.yaml"
    manifest.write_text(IMAGE_FUNCTION)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def count() -> dict[str, Any] | None:
        status, body = await get(cluster.url("imaged"))
        return json.loads(body) if status == 200 else None

    first = await cluster.eventually(count, timeout=60, what="HTTP 200 from the image function")
    assert first["function"] == "imaged"
    second = await count()
    assert second is not None and second["count"] == first["count"] + 1  # the same process

    status, body = await get(cluster.url("imaged") + "?sleep")  # times out after 1 s
    assert (status, body) == (502, "Internal Server Error")  # the detail is in the pod's log

    async def fresh() -> dict[str, Any] | None:
        answer = await count()
        return answer if answer is not None and answer["count"] == 1 else None

    await cluster.eventually(fresh, timeout=30, what="a restarted image container")
    _, out, _ = await cluster.kubectl("get", "fn", "imaged")
    assert "imaged" in out


IDLE_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: idler}
spec:
  runtime: python3.11
  handler: app.handler
  url: {authType: NONE}
  code:
    inline:
      app.py: |
        COUNT = 0
        def handler(event, context):
            global COUNT
            COUNT += 1
            return {"statusCode": 200, "body": str(COUNT)}
"""


async def test_used_versions_stay_up_and_idle_ones_scale_to_zero(
    cluster: Cluster,  # noqa: F811
) -> None:
    manifest = cluster.tmp / "idler.yaml"
    manifest.write_text(IDLE_FUNCTION)
    await cluster.kubectl("apply", "-f", str(manifest))
    deployment = cluster.path("apps", "v1", "deployments", "fn-idler-latest")

    async def count() -> int | None:
        status, body = await get(cluster.url("idler"))
        return int(body) if status == 200 else None

    last = await cluster.eventually(count, timeout=60, what="HTTP 200 from idler (from zero)")
    busy_until = time.monotonic() + KEEP_WARM * 1.5
    while time.monotonic() < busy_until:  # in use: $LATEST keeps its pod past keep-warm
        now = await count()
        assert now == last + 1, "the environment was replaced: a version in use scaled down"
        last = now
        await asyncio.sleep(0.5)

    async def scaled_to_zero() -> bool:
        return (await cluster.client.get(deployment))["spec"]["replicas"] == 0

    await cluster.eventually(
        scaled_to_zero, timeout=KEEP_WARM * 3, what="idle $LATEST scaled back to zero"
    )


QUEUE_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: drainer}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%s"}}
  code:
    inline:
      app.py: |
        import os
        def handler(event, context):
            with open(os.environ["OUT"], "a") as f:
                for record in event["Records"]:
                    f.write(record["body"] + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: drainer-orders}
spec:
  functionName: drainer
  source: {queue: orders}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: orders}
spec: {}
"""


async def test_queue_messages_reach_the_function(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    """The operator reports the mapping; the gateway's poller feeds the queue to the pods."""
    if cluster.redis_url is None:
        pytest.skip("no Redis for the gateway: set KLAMBDA_E2E_REDIS_URL (reachable from here)")
    cluster.double_only("the function writes to this machine's disk (a process kubelet pod)")
    out = tmp_path / "bodies.txt"
    manifest = cluster.tmp / "drainer.yaml"
    manifest.write_text(QUEUE_FUNCTION % out)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def polling() -> bool:
        _, table, _ = await cluster.kubectl("get", "esm", "drainer-orders")
        return "Enabled" in table and "True" in table

    await cluster.eventually(polling, what="EventSourceMapping drainer-orders Ready")
    queue = aioredis.Redis.from_url(cluster.redis_url)
    try:
        key = f"klambda:queue:{cluster.namespace}:orders"
        for i in range(3):
            await queue.xadd(key, {"body": f"order-{i}"})
        # producers outside the platform use the gateway's SQS API with a principal's key
        account = account_for(cluster.namespace)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
        }
        await cluster.client.create(
            cluster.path("", "v1", "secrets"),
            secret(
                cluster.namespace,
                "producer-key",
                {"klambda.io/principal": "producer"},
                {
                    "accessKeyId": "AKIAPRODUCER00000001",
                    "secretAccessKey": "producer-secret",
                    "policy": json.dumps(policy),
                },
            ),
        )
        sqs = aws_client("sqs", cluster.gateway_url, "AKIAPRODUCER00000001", "producer-secret")
        url = f"{cluster.gateway_url}/{account}/orders"

        async def sent(body: str) -> bool:
            try:
                await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody=body)
            except ClientError:  # the gateway has not seen the key or the queue yet
                return False
            return True

        for i in range(3, 5):
            await cluster.eventually(lambda b=f"order-{i}": sent(b), what="sent through SQS")

        async def delivered() -> list[str] | None:
            lines = out.read_text().split() if out.exists() else []
            return lines if len(lines) >= 5 else None

        lines = await cluster.eventually(delivered, timeout=60, what="5 messages delivered")
        assert sorted(lines) == [f"order-{i}" for i in range(5)]

        async def emptied() -> bool:
            return await queue.xlen(key) == 0

        await cluster.eventually(emptied, what="the queue emptied (messages deleted)")
    finally:
        await queue.aclose()


ZIP_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: zipped}
spec:
  runtime: python3.11
  handler: app.handler
  url: {authType: NONE}
  code: {zip: "%s"}
"""

ZIP_APP = """
import hashlib, pathlib
def handler(event, context):
    blob = (pathlib.Path(__file__).parent / "lib" / "native.bin").read_bytes()
    return {"statusCode": 200, "body": hashlib.sha256(blob).hexdigest()}
"""


async def test_zip_with_a_binary_file(cluster: Cluster) -> None:  # noqa: F811
    """A zip's files reach the pod byte for byte (binary ones through the ConfigMap's
    binaryData), and its CodeSha256 is Lambda's: of the archive, as under klambda up."""
    import base64
    import hashlib
    import io
    import zipfile

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    cluster.double_only("the zip is served from this machine's loopback")
    blob = bytes(range(256)) * 4  # not UTF-8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ZIP_APP)
        zf.writestr("lib/native.bin", blob)
    archive = buf.getvalue()

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=archive)

    app = web.Application()
    app.router.add_get("/code.zip", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        manifest = cluster.tmp / "zipped.yaml"
        manifest.write_text(ZIP_FUNCTION % server.make_url("/code.zip"))
        await cluster.kubectl("apply", "-f", str(manifest))

        async def answer() -> str | None:
            status, body = await get(cluster.url("zipped"))
            return body if status == 200 else None

        body = await cluster.eventually(answer, timeout=60, what="HTTP 200 from zipped")
    assert body == hashlib.sha256(blob).hexdigest()
    fn = await cluster.function("zipped")
    assert fn["status"]["codeSha256"] == base64.b64encode(hashlib.sha256(archive).digest()).decode()


FRAGILE_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: fragile}
spec:
  runtime: provided.al2023
  handler: x
  url: {authType: NONE}
  code:
    inline:
      bootstrap: |
        #!/usr/bin/env python3
        import os, urllib.request
        API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation/"
        while True:
            with urllib.request.urlopen(API + "next") as r:
                rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
            body = b'{"statusCode": 200, "body": "ok"}'
            urllib.request.urlopen(urllib.request.Request(API + rid + "/response", data=body))
"""


async def test_a_pod_that_cannot_start_environments_is_not_ready_until_it_can(
    cluster: Cluster,  # noqa: F811
) -> None:
    """Its readiness probe (the shim's /ready) fails while no environment can start, so the
    pod leaves the endpoints; repaired, it is Ready again by itself and serves."""
    cluster.double_only("breaks a pod's code in the process kubelet's files")
    manifest = cluster.tmp / "fragile.yaml"
    manifest.write_text(FRAGILE_FUNCTION)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def served() -> bool:
        return (await get(cluster.url("fragile")))[0] == 200

    await cluster.eventually(served, timeout=60, what="HTTP 200 from fragile")
    _, out, _ = await cluster.kubectl(
        "get", "pods", "-l", "klambda.io/function=fragile", "-o", "json"
    )
    (pod,) = json.loads(out)["items"]
    # calls keep coming, so the operator does not scale the idle version (keep-warm 6 s) to
    # zero while the pod is watched; they may bring a second pod, which the test ignores
    keep_using = asyncio.create_task(_keep_calling(cluster.url("fragile")))
    try:
        await _break_and_repair(cluster, pod)
    finally:
        keep_using.cancel()
        await asyncio.gather(keep_using, return_exceptions=True)


async def _keep_calling(url: str) -> None:
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            await get(url)


async def _break_and_repair(cluster: Cluster, pod: dict[str, Any]) -> None:  # noqa: F811
    async def served() -> bool:
        return (await get(cluster.url("fragile")))[0] == 200

    bootstrap = cluster.tmp / "pods" / pod["metadata"]["name"] / "var-task" / "bootstrap"
    await asyncio.to_thread(bootstrap.chmod, 0o644)  # its runtime can no longer start
    for pid in _runtimes_of(bootstrap):  # its warm environment goes (as an OOM kill would)
        os.kill(pid, signal.SIGKILL)
    status, _ = await get(cluster.url("fragile"))
    assert status != 200

    async def ready(wanted: str) -> bool:
        _, out, _ = await cluster.kubectl("get", "pod", pod["metadata"]["name"], "-o", "json")
        conditions = json.loads(out)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == wanted for c in conditions)

    shim_ready = f"http://{pod['status']['podIP']}:9002/ready"
    try:
        await cluster.eventually(lambda: ready("False"), timeout=30, what="the pod NotReady")
    except AssertionError as e:  # say what the shim itself answered
        raise AssertionError(f"{e}; the shim's /ready: {await get(shim_ready)}") from None
    await asyncio.to_thread(bootstrap.chmod, 0o755)
    await cluster.eventually(lambda: ready("True"), timeout=30, what="the pod Ready again")
    await cluster.eventually(served, timeout=30, what="HTTP 200 from fragile again")


def _runtimes_of(bootstrap: Path) -> list[int]:
    """Pids of the runtime processes started from ``bootstrap`` (ours: the kubelet's shim's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if str(bootstrap) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
    return found
