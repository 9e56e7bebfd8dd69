"""Attack, under ``klambda up`` run as root: function code that reads what is not its own or
calls another function's Runtime API. Each function's runtimes run under a uid of their own
(``api.isolation``), and a Runtime API answers only its runtime's user."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from klambda.api.isolation import UID_BASE
from tests.helpers import python_for_others, running_shim, shim_config

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="functions get users of their own only when klambda runs as root (on Linux)",
    ),
    pytest.mark.skipif(
        not python_for_others(), reason="no python3 on PATH that other users can run"
    ),
]

# A provided runtime: /usr/bin/env finds a python3 any user can run (the test's own interpreter
# may live where only root reads).
BOOTSTRAP = """#!/usr/bin/env python3
import json, os, tempfile, urllib.error, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
NEXT = "/2018-06-01/runtime/invocation/next"
while True:
    with urllib.request.urlopen(API + "/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    answer = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
              "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
              "home_owner": os.stat(os.environ["HOME"]).st_uid}
    try:
        with open(event["secret"]) as f:
            answer["secret"] = f.read()
    except OSError as e:
        answer["secret_error"] = type(e).__name__
    fd, path = tempfile.mkstemp(dir="/tmp")
    answer["tmp_mode"] = oct(os.stat(path).st_mode & 0o777)
    os.close(fd); os.unlink(path)
    if "steal" in event:  # another function's Runtime API, as a thief would call it
        try:
            urllib.request.urlopen("http://" + event["steal"] + NEXT, timeout=5)
            answer["stolen"] = True
        except urllib.error.HTTPError as e:
            answer["steal_status"] = e.code
            answer["steal_error"] = json.loads(e.read())["errorType"]
    body = json.dumps(answer).encode()
    answer_url = API + "/invocation/" + request_id + "/response"
    urllib.request.urlopen(urllib.request.Request(answer_url, data=body))
"""


def provided(base: Path, name: str, uid: int) -> object:
    base.mkdir(mode=0o711)
    return shim_config(
        base,
        {"bootstrap": BOOTSTRAP},
        function_name=name,
        runtime="provided.al2023",
        handler="x",
        runtime_uid=uid,
    )


async def test_a_function_runs_as_its_own_user_and_reads_nothing_of_roots(
    open_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "platform.json"  # as the data dir's state files are: 0600, root's
    secret.write_text("admin keys")
    secret.chmod(0o600)
    async with running_shim(provided(open_dir / "a", "a", UID_BASE), tmp_path) as shim:
        got = json.loads((await shim.invoke({"secret": str(secret)})).payload)
    assert (got["uid"], got["gid"], got["groups"]) == (UID_BASE, UID_BASE, [])
    assert got["secret_error"] == "PermissionError" and "secret" not in got
    assert got["home_owner"] == UID_BASE
    assert got["tmp_mode"] == "0o600"  # what it leaves in the shared /tmp is its own


async def test_another_functions_code_cannot_take_an_environments_events(
    open_dir: Path, tmp_path: Path
) -> None:
    a_config = provided(open_dir / "a", "a", UID_BASE)
    b_config = provided(open_dir / "b", "b", UID_BASE + 1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        running_shim(a_config, tmp_path / "a") as a,
        running_shim(b_config, tmp_path / "b") as b,
    ):
        victim = json.loads((await b.invoke({"secret": "/nonexistent"})).payload)
        thief = json.loads((await a.invoke({"secret": "/x", "steal": victim["api"]})).payload)
        assert "stolen" not in thief
        assert (thief["steal_status"], thief["steal_error"]) == (403, "Runtime.Forbidden")
        async with aiohttp.ClientSession() as http:  # nor any other user (root here)
            url = f"http://{victim['api']}/2018-06-01/runtime/invocation/next"
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                assert r.status == 403
        again = json.loads((await b.invoke({"secret": "/nonexistent"})).payload)
        assert again["uid"] == UID_BASE + 1  # the environment still serves its own runtime


async def test_a_runtime_other_users_cannot_read_runs_as_root_and_still_serves(
    tmp_path: Path,
) -> None:
    """Code under a 0700 directory (as pyenv's interpreter under /root): the shim keeps root,
    says why in its log, and the function works."""
    config = provided(tmp_path / "a", "a", UID_BASE)
    async with running_shim(config, tmp_path) as shim:
        got = json.loads((await shim.invoke({"secret": "/nonexistent"})).payload)
    assert got["uid"] == 0
