"""How every process the platform starts ends with the one that started it.

Part of the shim contract: ``klambda up`` starts the embedded Redis and the shims, a shim starts
its runtimes, the tests' process kubelet starts shims. If any parent is killed outright
(SIGKILL, an OOM kill, a supervisor giving up), nothing may live on holding ports, memory or the
data dir. On Linux each child asks the kernel for a parent-death signal (``PR_SET_PDEATHSIG``)
between fork and exec, so the chain cascades: ``klambda up`` dies -> its shims get SIGKILL ->
their runtimes get SIGKILL. Elsewhere this is a no-op and only orderly shutdown stops children.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - a Linux without a C library to load
        return None
    fn: Callable[[int, int], int] = libc.prctl
    return fn


def die_with_parent(sig: int = signal.SIGKILL, uid: int | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process ends.

    Made in the parent (the C function is looked up before fork, so the child only makes one
    system call). The signal is tied to the thread that forks, which is the event loop's thread
    everywhere we spawn. If the parent died before the call took effect the child exits at once,
    which closes the race between fork and ``prctl``.

    ``uid``: the child also becomes that user (and group), with no supplementary groups and a
    umask that keeps the files it makes (in /tmp too) its own. Done here rather than by
    ``subprocess``'s ``user=``, which uvloop's spawn does not take.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if uid is not None:  # first: a change of user clears the parent-death signal
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.umask(0o077)
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return preexec
