"""Error payloads the platform itself produces, in the shape Lambda returns them.

Function errors reported by the runtime are forwarded verbatim; these cover what only the
platform can see: timeouts, crashed runtimes, oversized responses, missing runtimes.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime


def iso_now(now: float | None = None) -> str:
    ts = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def timeout_message(request_id: str, timeout: float, now: float | None = None) -> str:
    return f"{iso_now(now)} {request_id} Task timed out after {timeout:.2f} seconds"


def payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def timed_out(request_id: str, timeout: float, now: float | None = None) -> bytes:
    return payload("Sandbox.Timedout", timeout_message(request_id, timeout, now))


def exit_error(request_id: str, returncode: int | None) -> bytes:
    if returncode is None:
        how = "unknown"
    elif returncode < 0:
        how = f"signal: {_signal_name(-returncode)}"
    else:
        how = f"exit status {returncode}"
    return payload(
        "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {how}"
    )


def out_of_memory(request_id: str) -> bytes:
    return payload(
        "Runtime.OutOfMemory",
        f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
    )


# Go's signal descriptions, as Lambda's "Runtime exited with error: signal: ..." uses them.
_SIGNALS = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
}


def _signal_name(signum: int) -> str:
    try:
        sig = signal.Signals(signum)
    except ValueError:
        return str(signum)
    return _SIGNALS.get(sig, sig.name.removeprefix("SIG").lower())
