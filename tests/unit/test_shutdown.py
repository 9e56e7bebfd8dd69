"""The shutdown backstop: whatever a step hangs on, the process ends within its bound and says
what it was waiting on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

STUCK = """
import asyncio, logging, os, signal, sys
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
from klambda.cli.shutdown import Shutdown

async def main():
    shutdown = Shutdown(grace=0.5, slack=0.5)
    shutdown.install(asyncio.get_running_loop())
    os.kill(os.getpid(), signal.SIGINT)
    await shutdown.requested.wait()
    never = asyncio.Event()
    await shutdown.named("a step that never ends", never.wait)()

asyncio.run(main())
"""


def test_a_stuck_step_ends_the_process_within_the_bound(tmp_path: Path) -> None:
    log = tmp_path / "klambda.log"
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", STUCK, str(log)], capture_output=True, text=True, timeout=30
    )
    took = time.monotonic() - started
    assert r.returncode == 1, r.stderr
    assert took < 10, took  # 1 s of grace + slack, and the interpreter's start
    assert "waiting on: a step that never ends" in r.stderr
    text = log.read_text()
    assert "waiting on: a step that never ends" in text
    assert "task " in text and "waits in" in text  # where each asyncio task was
