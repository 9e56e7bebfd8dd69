"""Local isolation between functions: each function's runtimes under a user id of its own.

Under ``klambda up`` every function runs on one machine. Run by an ordinary user, all runtimes
share that user, who can read anything of any of them; run as root, klambda gives each function
a uid of its own (from ``UID_BASE``, no login, no home), so one function's code cannot read the
platform's files or another function's memory, environment or files, and the Runtime API can
tell its runtime's connections from anyone else's (the kernel records a socket's owner).

A runtime can only run under such a uid if every file it needs is readable by others: an
interpreter installed under ``/root`` (pyenv's default) is not, and then that runtime runs as
root, with a warning that says why. This is the shared contract between the CLI (which says what
a run isolates) and the shim (which drops privileges).
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

UID_BASE = 1_500_000_000
"""First uid given to a function; far above any user's or container's subordinate ids."""
UID_COUNT = 1_000_000


def blocked_for_others(paths: list[str]) -> str | None:
    """The first of ``paths`` (or a directory above one) a user other than its owner and group
    cannot reach; None when an unprivileged user can read (and run) all of them."""
    for given in paths:
        path = Path(os.path.realpath(given))
        try:
            for directory in reversed(path.parents):
                if not os.stat(directory).st_mode & stat.S_IXOTH:
                    return str(directory)
            mode = os.stat(path).st_mode
        except OSError:
            return str(path)
        needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if stat.S_ISREG(mode) and mode & stat.S_IXUSR:
            needed |= stat.S_IXOTH
        if mode & needed != needed:
            return str(path)
    return None


def function_uid(index: int) -> int:
    """The uid of the ``index``-th function a run has isolated."""
    if not 0 <= index < UID_COUNT:
        raise ValueError(f"no uid left for another function (at most {UID_COUNT})")
    return UID_BASE + index


def runtime_files(command: list[str]) -> list[str]:
    """What a runtime's user must be able to read: its executable, and for this interpreter
    its standard library and awslambdaric's site-packages."""
    files = [command[0]]
    if command[0] == sys.executable:
        files.append(os.path.dirname(os.__file__))
        spec = importlib.util.find_spec("awslambdaric")
        if spec is not None and spec.origin:
            files.append(os.path.dirname(os.path.dirname(spec.origin)))
    return files
