"""Function status, computed (pure) from what the controller observed.

One ``Ready`` condition with a Reason constant and a message a user can act on; Lambda's
``state``; ``observedGeneration``. ``lastTransitionTime`` only moves when the condition's status
does, as Kubernetes conventions ask.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from klambda.controller.api.objects import ApiObject

READY = "Ready"
# Reasons
REASON_READY = "EnvironmentReady"
REASON_RECONCILING = "Reconciling"
REASON_STALE = "PreviousConfigurationServing"


class FailureLike(Protocol):
    reason: str
    message: str
    permanent: bool


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ready_condition(
    previous: list[dict[str, Any]],
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
) -> dict[str, Any]:
    old = next((c for c in previous if c.get("type") == READY), None)
    changed = old is None or old.get("status") != status
    return {
        "type": READY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (now or _now()) if changed else old["lastTransitionTime"],
        "observedGeneration": generation,
    }


def function_status(
    fn: ApiObject,
    *,
    previous: dict[str, Any],
    current: bool,
    serving: bool,
    failure: FailureLike | None,
    url: str,
    code_sha256: str,
    now: str | None = None,
) -> dict[str, Any]:
    """Status of a Function's $LATEST.

    ``current``: a shim runs the latest configuration; ``serving``: some shim (maybe an older
    configuration) takes invocations; ``failure``: why the latest configuration did not start.
    """
    if current:
        status, reason, message, state = (
            "True",
            REASON_READY,
            "ready to serve invocations",
            "Active",
        )
    elif failure is not None:
        status, reason, state = "False", failure.reason, "Active" if serving else "Failed"
        message = failure.message
        if serving:
            message += "; the previous configuration keeps serving"
    else:
        status, reason, message, state = "Unknown", REASON_RECONCILING, "starting", "Pending"
    conditions = [
        ready_condition(previous.get("conditions", []), status, reason, message, fn.generation, now)
    ]
    last_modified = previous.get("lastModified") or ""
    if previous.get("observedGeneration") != fn.generation:
        last_modified = now or _now()
    return {
        "observedGeneration": fn.generation,
        "conditions": conditions,
        "state": state,
        "url": url,
        "codeSha256": code_sha256 or previous.get("codeSha256", ""),
        "lastModified": last_modified,
    }
