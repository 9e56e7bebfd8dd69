"""Attack, under ``klambda up``: another function's code finds an environment's Runtime API
address (it is in that runtime's environment, readable in /proc) and asks for its events."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import aiohttp

from tests.helpers import running_shim, shim_config

APP = """
import os
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    home = os.environ["HOME"]
    return {"count": COUNT, "api": os.environ["AWS_LAMBDA_RUNTIME_API"], "home": home,
            "home_mode": oct(os.stat(home).st_mode & 0o777)}
"""


async def test_a_second_next_is_refused_and_never_takes_the_event(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": APP})
    async with running_shim(config, tmp_path) as shim:
        first = json.loads((await shim.invoke()).payload)
        api = first["api"]
        await asyncio.sleep(0.3)  # the runtime is back in its /next, waiting
        async with aiohttp.ClientSession() as http:
            url = f"http://{api}/2018-06-01/runtime/invocation/next"
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                assert r.status == 409
                assert (await r.json())["errorType"] == "Runtime.ConcurrentNext"
            second = json.loads((await shim.invoke()).payload)
        assert second["count"] == 2  # the real runtime got the event, and answered it


async def test_runtimes_get_a_private_home_not_the_users(tmp_path: Path) -> None:
    config = shim_config(tmp_path, {"app.py": APP})
    async with running_shim(config, tmp_path) as shim:
        got = json.loads((await shim.invoke()).payload)
    assert got["home"] != os.environ.get("HOME")
    assert got["home_mode"] == oct(stat.S_IRWXU)
    assert not await asyncio.to_thread(Path(got["home"]).exists)  # gone with the shim
