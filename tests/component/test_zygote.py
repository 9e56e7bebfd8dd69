"""Python environments are forked from the shim's zygote: each is its own process group with its
own Runtime API address and the function's environment, awslambdaric reads its settings from
that environment, and a dead zygote only means environments are spawned again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import replace
from pathlib import Path

from klambda.api.shim_config import ShimConfig
from tests.helpers import running_shim, shim_config

APP = """
import json, os, sys, time

def handler(event, context):
    ppid = os.getppid()
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        parent = f.read().replace(b"\\0", b" ").decode()
    time.sleep(event.get("sleep", 0))
    return {
        "pid": os.getpid(),
        "ppid": ppid,
        "parent": parent,
        "pgid": os.getpgid(0),
        "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "greeting": os.environ.get("GREETING"),
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "path0": sys.path[0],
    }
"""


def _config(tmp: Path, **fields: object) -> ShimConfig:
    return shim_config(
        tmp,
        {"app.py": APP},
        max_environments=2,
        acquire_timeout=5,
        environment={"GREETING": "hi"},
        **fields,
    )


async def test_environments_are_forked_each_with_its_own_address_and_group(
    tmp_path: Path,
) -> None:
    async with running_shim(_config(tmp_path), tmp_path) as shim:
        answers = await asyncio.gather(*(shim.invoke({"sleep": 0.3}) for _ in range(2)))
    a, b = (json.loads(x.payload) for x in answers)
    assert "zygote_main.py" in a["parent"] and a["ppid"] == b["ppid"]  # one zygote forked both
    assert a["pid"] != b["pid"] and a["api"] != b["api"]  # two environments, two addresses
    assert a["pgid"] == a["pid"]  # a group of its own: a kill takes what it started
    assert a["greeting"] == "hi" and a["argv"] == ["app.handler"]
    assert a["cwd"] == a["path0"] == str(tmp_path / "code")  # as `python -m awslambdaric`
    assert answers[0].init_duration_ms > 0


VIEW = """
import os, sys

def handler(event, context):
    return {"environ": dict(os.environ), "path": sys.path, "modules": sorted(sys.modules),
            "argv0": os.path.basename(sys.argv[0]), "main": sys.modules["__main__"].__name__}
"""


async def test_a_forked_environment_looks_to_the_handler_as_a_plain_start(tmp_path: Path) -> None:
    views = []
    for zygote in (True, False):
        folder = tmp_path / str(zygote)
        folder.mkdir()
        config = shim_config(folder, {"app.py": VIEW}, environment={"GREETING": "hi"})
        config = replace(config, zygote=zygote)
        async with running_shim(config, folder) as shim:
            views.append(json.loads((await shim.invoke()).payload))
    forked, spawned = views
    for view in views:  # per-environment values differ between any two environments
        for own in ("AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "PYTHONPATH",
                    "LAMBDA_TASK_ROOT", "HOME"):  # fmt: skip
            view["environ"].pop(own, None)
        view["path"] = [p.replace(str(tmp_path / "True"), "*").replace(str(tmp_path / "False"), "*")
                        for p in view["path"]]  # fmt: skip
    assert forked["environ"] == spawned["environ"]
    assert forked["path"] == spawned["path"]
    assert set(forked["modules"]) ^ set(spawned["modules"]) == set()
    assert (forked["argv0"], forked["main"]) == (spawned["argv0"], spawned["main"])


async def test_without_the_zygote_environments_are_spawned(tmp_path: Path) -> None:
    async with running_shim(_config(tmp_path, zygote=False), tmp_path) as shim:
        answer = json.loads((await shim.invoke()).payload)
    assert "zygote_main.py" not in answer["parent"] and "klambda.shim" in answer["parent"]


async def test_a_killed_zygote_takes_its_environments_and_another_is_started(
    tmp_path: Path,
) -> None:
    async with running_shim(_config(tmp_path), tmp_path) as shim:
        first = json.loads((await shim.invoke()).payload)
        os.kill(first["ppid"], signal.SIGKILL)
        await asyncio.sleep(0.3)
        with_it = await shim.invoke()  # its environment died with it: a new one, spawned
        second = json.loads(with_it.payload)
        await asyncio.sleep(2.5)  # the zygote's successor starts (after a second)
        later = await asyncio.gather(*(shim.invoke({"sleep": 0.3}) for _ in range(2)))
    assert second["pid"] != first["pid"]
    assert "zygote_main.py" not in second["parent"]
    assert with_it.init_duration_ms > 0  # a cold start, reported as one
    parents = [json.loads(x.payload) for x in later]
    forked = [p for p in parents if "zygote_main.py" in p["parent"]]
    assert forked and all(p["ppid"] != first["ppid"] for p in forked)  # a new zygote forks
