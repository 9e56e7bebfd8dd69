"""The runtime shim as a real process: gRPC in, awslambdaric (or a bootstrap) behind it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from klambda.gateway.errors import ServiceError, TooManyRequests
from klambda.gateway.shim_client import ShimClient, ShimUnavailable
from klambda.protos import shim_pb2
from tests.helpers import ARN, free_port, running_shim, shim_config

APP = """
import json, os, time
COUNT = 0
PID = os.getpid()
PREFIXES = ("AWS_", "_HANDLER", "LAMBDA_", "TZ", "GREETING")

def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action")
    print("handling", action)
    if action == "raise":
        raise ValueError("boom")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "huge":
        return "x" * (7 * 1024 * 1024)
    if action == "allocate":
        block = bytearray(event["mb"] * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        return len(block)
    if action == "context":
        return {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "identity": [
                context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id
            ],
            "client_context": context.client_context and context.client_context.custom,
            "env": {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)},
        }
    return {"count": COUNT, "pid": PID}
"""


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return shim_config(
        tmp_path, {"app.py": APP}, timeout=2.0, memory_size=128, environment={"GREETING": "hi"}
    )


async def test_environment_is_reused_and_only_the_first_call_is_cold(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        first = await shim.invoke()
        second = await shim.invoke()
    a, b = json.loads(first.payload), json.loads(second.payload)
    assert (a["count"], b["count"]) == (1, 2)
    assert a["pid"] == b["pid"]
    assert first.init_duration_ms > 0
    assert second.init_duration_ms == 0
    assert first.executed_version == "$LATEST"
    assert first.max_memory_used_mb > 5


async def test_context_and_environment_variables(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client_context = json.dumps({"custom": {"k": "v"}, "client": {}, "env": {}})
    async with running_shim(config, tmp_path) as shim:
        r = await shim.invoke(
            {"action": "context"},
            request_id="req-1",
            invoked_function_arn=ARN + ":live",
            client_context=client_context,
        )
    ctx = json.loads(r.payload)
    assert ctx["aws_request_id"] == "req-1"
    assert ctx["function_name"] == "fn"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == ARN + ":live"
    assert ctx["memory_limit_in_mb"] == "128"
    assert ctx["log_group_name"] == "/aws/lambda/fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 1000 < ctx["remaining"] <= 2000
    assert ctx["identity"] == [None, None]
    assert ctx["client_context"] == {"k": "v"}
    env = ctx["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == config.code_dir
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == ctx["log_stream_name"]
    assert env["TZ"] == ":UTC"
    assert env["GREETING"] == "hi"


async def test_caller_deadline_caps_the_timeout(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()  # warm up, so init time does not count against the deadline
        r = await shim.invoke({"action": "context"}, timeout=1.0)
    assert json.loads(r.payload)["remaining"] <= 1050  # the function timeout is 2000 ms


async def test_handler_error_is_a_function_error_and_the_environment_survives(
    config, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()
        err = await shim.invoke({"action": "raise"})
        after = await shim.invoke()
    body = json.loads(err.payload)
    assert err.function_error == "Unhandled"
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "boom")
    assert body["stackTrace"]
    assert json.loads(after.payload)["count"] == 3


async def test_timeout_kills_the_environment_and_the_next_call_is_cold(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        first = json.loads((await shim.invoke()).payload)
        r = await shim.invoke({"action": "sleep", "seconds": 10})
        after = await shim.invoke()
        log = shim.log_text()
    body = json.loads(r.payload)
    assert r.function_error == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert r.duration_ms == pytest.approx(2000)
    assert after.init_duration_ms > 0
    assert json.loads(after.payload)["pid"] != first["pid"]
    assert "Task timed out after 2.00 seconds" in log
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)


async def test_crashed_environment_is_replaced(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        first = json.loads((await shim.invoke()).payload)
        r = await shim.invoke({"action": "exit"})
        after = await shim.invoke()
    body = json.loads(r.payload)
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
    again = json.loads(after.payload)
    assert again["count"] == 1 and again["pid"] != first["pid"]


async def test_memory_is_limited_to_memory_size(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        ok = await shim.invoke({"action": "allocate", "mb": 40})
        over = await shim.invoke({"action": "allocate", "mb": 300})
        after = await shim.invoke()
    assert ok.function_error == "" and 40 < ok.max_memory_used_mb <= 128
    body = json.loads(over.payload)
    assert over.function_error == "Unhandled"
    assert body["errorType"] in ("Runtime.OutOfMemory", "MemoryError")
    assert after.function_error == ""


async def test_init_error_is_reported(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": "import not_a_module\n"})
    async with running_shim(config, tmp_path) as shim:
        r = await shim.invoke()
    body = json.loads(r.payload)
    assert r.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module" in body["errorMessage"]


async def test_logs_frame_every_invocation(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        one = await shim.invoke(request_id="r-1", tail_log=True)
        await shim.invoke(request_id="r-2")
        log = shim.log_text()
    lines = log.splitlines()
    start = lines.index("START RequestId: r-1 Version: $LATEST")
    assert lines[start + 1] == "handling None"
    assert lines[start + 2] == "END RequestId: r-1"
    report1 = lines[start + 3]
    assert re.fullmatch(
        r"REPORT RequestId: r-1\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t",
        report1,
    )
    report2 = next(x for x in lines if x.startswith("REPORT RequestId: r-2"))
    assert "Init Duration" not in report2
    assert one.log_tail.decode().startswith("START RequestId: r-1")
    assert "REPORT RequestId: r-1" in one.log_tail.decode()


async def test_concurrent_invocations_get_their_own_environments(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_shim(config, tmp_path) as shim:
        rs = await asyncio.gather(
            *(shim.invoke({"action": "sleep", "seconds": 0.5}) for _ in range(3))
        )
        status = await shim.stub.Status(shim_pb2.StatusRequest())
    pids = {json.loads(r.payload)["pid"] for r in rs}
    assert len(pids) == 3
    assert status.environments == 3 and status.busy == 0


BOOTSTRAP = """#!/usr/bin/env python3
import json, os, urllib.request, urllib.error
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        deadline = int(r.headers["Lambda-Runtime-Deadline-Ms"])
        arn = r.headers["Lambda-Runtime-Invoked-Function-Arn"]
        event = json.loads(r.read())
    try:  # a wrong request id is refused
        urllib.request.urlopen(urllib.request.Request(api + "/invocation/nope/response", data=b"1"))
        wrong = 202
    except urllib.error.HTTPError as e:
        wrong = e.code
    body = json.dumps({"event": event, "wrong_id_status": wrong, "handler": os.environ["_HANDLER"],
                       "arn": arn, "deadline": deadline}).encode()
    done = urllib.request.Request(api + "/invocation/" + rid + "/response", data=body)
    urllib.request.urlopen(done)
"""


async def test_provided_runtime_runs_bootstrap(tmp_path: Path) -> None:
    config = shim_config(
        tmp_path, {"bootstrap": BOOTSTRAP}, runtime="provided.al2023", handler="my.handler"
    )
    async with running_shim(config, tmp_path) as shim:
        r = await shim.invoke({"x": 1}, request_id="r")
    body = json.loads(r.payload)
    assert body["event"] == {"x": 1}
    assert body["wrong_id_status"] == 400
    assert body["handler"] == "my.handler"
    assert body["arn"] == ARN


async def test_missing_bootstrap_is_a_clear_start_error(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": ""}, runtime="provided")
    with pytest.raises(RuntimeError, match="needs an executable file named 'bootstrap'"):
        async with running_shim(config, tmp_path):
            pass


async def test_unavailable_python_is_a_clear_start_error(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": ""}, runtime="python3.10")
    try:
        async with running_shim(config, tmp_path):
            pytest.skip("python3.10 with awslambdaric is installed here")
    except RuntimeError as e:
        assert "runtime python3.10" in str(e)


async def test_busy_shim_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": APP}, max_environments=1, acquire_timeout=0.2)
    async with running_shim(config, tmp_path) as shim:
        slow = asyncio.create_task(shim.invoke({"action": "sleep", "seconds": 1}))
        await asyncio.sleep(0.5)
        with pytest.raises(TooManyRequests):
            await shim.invoke()
        assert (await slow).function_error == ""


async def test_back_to_back_invocations_on_a_reused_environment(tmp_path: Path) -> None:
    """A new invocation may reach an environment before its runtime asks for one again."""
    config = shim_config(tmp_path, {"app.py": APP}, max_environments=2, acquire_timeout=5)
    async with running_shim(config, tmp_path) as shim:

        async def caller() -> list[str]:
            return [(await shim.invoke()).function_error for _ in range(25)]

        results = await asyncio.gather(*(caller() for _ in range(4)))
    assert [e for batch in results for e in batch] == [""] * 100


async def test_one_stream_answers_overlapping_invocations_by_request_id(tmp_path: Path) -> None:
    """Answers come back in completion order on one stream, each matched to its caller."""
    config = shim_config(tmp_path, {"app.py": APP}, max_environments=4, acquire_timeout=5)
    async with running_shim(config, tmp_path) as shim:

        async def call(i: int) -> tuple[str, str]:
            seconds = 0.05 * (i % 4)
            await shim.invoke({"action": "sleep", "seconds": seconds}, request_id=f"r-{i}")
            r = await shim.invoke({"action": "context"}, request_id=f"c-{i}")
            return f"c-{i}", json.loads(r.payload)["aws_request_id"]

        pairs = await asyncio.gather(*(call(i) for i in range(12)))
        assert len(shim.client._connections) == 1
    assert all(sent == seen for sent, seen in pairs)


async def test_shim_dying_mid_invocation_is_a_service_error_not_a_retry(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Once sent, an invocation may have run: it is reported, never sent elsewhere."""
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()
        slow = asyncio.create_task(shim.invoke({"action": "sleep", "seconds": 5}))
        await asyncio.sleep(0.3)
        shim.process.kill()
        with pytest.raises(ServiceError) as info:
            await asyncio.wait_for(slow, 5)
        assert not isinstance(info.value, ShimUnavailable)
        with pytest.raises(ShimUnavailable):  # a new request is refused before it is sent
            await asyncio.wait_for(shim.invoke(), 5)


async def test_unreachable_shim_is_unavailable(tmp_path: Path) -> None:
    client = ShimClient()
    try:
        with pytest.raises(ShimUnavailable):
            request = shim_pb2.InvokeRequest(payload=b"{}", request_id="r")
            address = f"127.0.0.1:{free_port()}"
            await asyncio.wait_for(client.invoke(address, request, 5, ("d", "f", "$LATEST")), 10)
    finally:
        await client.close()


async def test_draining_shim_finishes_started_work_and_refuses_new_work(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM (a roll-out, a pod scaled away): in-flight invocations complete; new ones on the
    open stream are refused as not started, so the gateway can send them elsewhere."""
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()
        slow = asyncio.create_task(shim.invoke({"action": "sleep", "seconds": 1.0}))
        await asyncio.sleep(0.3)
        shim.process.terminate()
        await asyncio.sleep(0.3)
        with pytest.raises(ShimUnavailable, match="draining"):
            await shim.invoke()
        assert (await slow).function_error == ""
        # the stream ends once answered, so the shim exits well within its 12 s grace period
        await asyncio.wait_for(shim.process.wait(), 5)


async def test_logs_reach_stdout_for_kubectl_logs(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": APP}, log_to_stdout=True)
    stdout = tmp_path / "stdout"
    async with running_shim(config, tmp_path, stdout=stdout) as shim:
        await shim.invoke({"action": "hello"}, request_id="r-out")
    text = stdout.read_text()  # the shim has stopped: the follower copied everything
    start = text.index("START RequestId: r-out")
    assert start < text.index("handling hello") < text.index("REPORT RequestId: r-out")


async def test_an_environment_that_dies_while_idle_is_replaced(tmp_path: Path) -> None:
    """One environment per shim (every Kubernetes pod): if it dies between invocations, the
    next invocation gets a fresh one instead of a 429 forever."""
    config = shim_config(tmp_path, {"app.py": APP}, max_environments=1, acquire_timeout=1.0)
    async with running_shim(config, tmp_path) as shim:
        first = json.loads((await shim.invoke()).payload)
        os.kill(first["pid"], signal.SIGKILL)  # dies while idle (an OOM kill, a crash)
        for _ in range(100):  # until the shim has seen it go
            if _gone(first["pid"]):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        again = json.loads((await shim.invoke()).payload)
        third = json.loads((await shim.invoke()).payload)
    assert again["count"] == 1 and again["pid"] != first["pid"]  # a new environment
    assert third["pid"] == again["pid"]  # which is then reused


def _gone(pid: int) -> bool:
    """Reaped, or a zombie waiting to be."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_a_silent_shim_costs_a_call_seconds_not_its_deadline(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A shim that stops answering (its node froze, a network partition) is found out by the
    stream's keepalive pings, so a call fails in seconds instead of waiting out its deadline."""
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()
        shim.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ServiceError):
                await shim.invoke(timeout=60)
            took = time.monotonic() - started
        finally:
            shim.process.send_signal(signal.SIGCONT)
    assert took < 30, f"the call waited {took:.1f}s for a silent shim"


async def test_a_response_over_6_mb_is_refused_each_time_and_the_next_call_is_served(
    config, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Lambda's Function.ResponseSizeTooLarge, every time: the Runtime API answers the post
    413 from its headers (awslambdaric then exits, as on Lambda, and a new environment takes
    the next call), and the next call is served."""
    async with running_shim(config, tmp_path) as shim:
        await shim.invoke()
        for _ in range(2):
            r = await shim.invoke({"action": "huge"})
            assert r.error_type == "Function.ResponseSizeTooLarge", r.payload[:300]
            assert "Response payload size exceeded" in json.loads(r.payload)["errorMessage"]
        after = await shim.invoke()
    assert not after.error_type and json.loads(after.payload)["count"] >= 1
