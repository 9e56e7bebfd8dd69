"""Which command runs a function's runtime in an execution environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path


class RuntimeUnavailable(Exception):
    """The runtime cannot run here; the message tells the user what to install or fix."""


def execution_env(runtime: str) -> str:
    """AWS_EXECUTION_ENV; awslambdaric switches 3.12+ to thread polling by it."""
    return f"AWS_Lambda_{runtime}"


async def resolve_command(runtime: str, handler: str, code_dir: str) -> list[str]:
    """The argv that starts one environment of ``runtime``.

    Python runtimes run AWS's own awslambdaric under the matching interpreter (this one when
    the versions agree); ``provided`` runtimes run the code's ``bootstrap`` executable.
    """
    if runtime.startswith("provided"):
        return [_bootstrap(runtime, Path(code_dir, "bootstrap"))]
    if runtime.startswith("python3."):
        return [await _python_for(runtime), "-m", "awslambdaric", handler]
    raise RuntimeUnavailable(f"unsupported runtime {runtime!r}")


def _bootstrap(runtime: str, path: Path) -> str:
    if not path.is_file():
        raise RuntimeUnavailable(
            f"runtime {runtime} needs an executable file named 'bootstrap' in the code"
        )
    if not os.access(path, os.X_OK):
        raise RuntimeUnavailable("the code's 'bootstrap' file is not executable")
    return str(path)


async def _python_for(runtime: str) -> str:
    wanted = runtime.removeprefix("python")
    if f"{sys.version_info.major}.{sys.version_info.minor}" == wanted:
        return sys.executable
    exe = shutil.which(runtime)
    if exe is None:
        raise RuntimeUnavailable(
            f"runtime {runtime} needs a {runtime} interpreter on PATH; none was found"
        )
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-c",
        "import awslambdaric",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        raise RuntimeUnavailable(
            f"runtime {runtime}: {exe} cannot import awslambdaric "
            f"(run '{exe} -m pip install awslambdaric'): {detail[-1] if detail else 'failed'}"
        )
    return exe
