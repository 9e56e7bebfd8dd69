"""The zygote: a Python interpreter of one runtime, started once per shim, that has paid for
interpreter start-up and awslambdaric's imports, and forks a new execution environment on
each request in a few milliseconds.

Run by the runtime's own interpreter (``python3.12 zygote_main.py FD``), which may not have
klambda installed: this file uses the standard library and awslambdaric only.

The shim talks to it over a SOCK_SEQPACKET socket (``FD``), one JSON message per packet:
``{"argv", "env", "cwd"}`` with the environment's log fd attached (SCM_RIGHTS) asks for an
environment, answered ``{"pid"}`` (or ``{"error"}``); ``{"exit": pid, "status"}`` reports one
that ended (status as asyncio reports it: the exit code, or minus the signal).

What a child does before it runs awslambdaric (as ``python -m awslambdaric HANDLER`` would):
its own session (process group), the parent-death signal, the log fd as stdout and stderr,
/dev/null as stdin, the working directory, exactly the environment it was given, default
signal handlers, the zygote's own modules out of ``sys.modules``, and awslambdaric's modules
and its C runtime client imported afresh, so that what they read from the environment as they
load (log format and level, the JSON encoder's settings, the Runtime API's address) is its
own. The libraries they use (the standard library's, simplejson) stay loaded: the handler sees
the same ``os.environ``, ``sys.path`` and ``sys.modules`` as after a plain start.
"""

from __future__ import annotations

import os
import runpy  # what ``python -m`` imports
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # the zygote's own modules are imported after the preload (``_preload``)
    import socket
_PR_SET_PDEATHSIG = 1
_STARTED_WITH = dict(os.environ)
"""The zygote's environment as the interpreter left it: the shim's, plus what start-up added
(locale coercion's LC_CTYPE), which a plain start of each environment would add alike."""


class _NotYet:
    """Keeps awslambdaric's C runtime client out of the zygote: it reads the Runtime API's
    address once, when it is first initialised, so each environment must load its own."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "runtime_client":
            raise ImportError("loaded by each environment")
        return None


def _preload() -> set[str]:
    """Imports what ``python -m awslambdaric`` imports, and returns the modules then loaded:
    the zygote's own modules, imported after, are taken out of each child's ``sys.modules``
    so that the handler sees what a plain start gives it."""
    blocker = _NotYet()
    sys.meta_path.insert(0, blocker)
    try:
        import awslambdaric.__main__  # noqa: F401  (its dependencies are the point)
    finally:
        sys.meta_path.remove(blocker)
    for name in [m for m in sys.modules if m == "awslambdaric" or m.startswith("awslambdaric.")]:
        del sys.modules[name]  # re-imported by each child, under its own environment
    return set(sys.modules)


def _child(
    request: dict[str, object],
    output: int,
    control: socket.socket,
    zygote: int,
    wake: tuple[int, int],
    preloaded: set[str],
) -> None:
    """Becomes the environment; never returns."""
    import contextlib
    import ctypes
    import signal

    code = 1
    try:
        control.close()
        signal.set_wakeup_fd(-1)
        for fd in wake:
            os.close(fd)
        os.setsid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != zygote:  # the zygote died before the call took effect
            os._exit(1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        for fd in (null, output):
            if fd > 2:
                os.close(fd)
        os.chdir(str(request["cwd"]))
        env: dict[str, str] = request["env"]  # type: ignore[assignment]
        os.environ.clear()
        os.environ.update({k: v for k, v in _STARTED_WITH.items() if k not in env})
        os.environ.update(env)
        sys.argv = list(request["argv"])  # type: ignore[call-overload]
        sys.path[0] = os.getcwd()  # as ``python -m`` sets it
        for name in set(sys.modules) - preloaded:  # the zygote's own: a plain start has none
            del sys.modules[name]
        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _send(control: socket.socket, message: dict[str, object]) -> None:
    import json

    control.send(json.dumps(message).encode())


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        _send(control, {"exit": pid, "status": code})


def main() -> None:
    preloaded = _preload()
    import json
    import select
    import signal
    import socket

    control = socket.socket(fileno=int(sys.argv[1]))
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    zygote = os.getpid()
    _send(control, {"ready": True})
    while True:
        readable, _, _ = select.select([control.fileno(), wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(control)
        if control.fileno() not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
        if not data:  # the shim is gone
            return
        try:
            request = json.loads(data)
            (output,) = fds
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            _send(control, {"error": f"bad request: {e}"})
            continue
        try:
            pid = os.fork()
        except OSError as e:
            os.close(output)
            _send(control, {"error": f"fork: {e}"})
            continue
        if pid == 0:
            _child(request, output, control, zygote, (wake_read, wake_write), preloaded)
        os.close(output)
        _send(control, {"pid": pid})
        _reap(control)


if __name__ == "__main__":
    main()
