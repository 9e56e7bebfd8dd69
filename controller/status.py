"""Status of each kind, computed (pure) from what the controller observed.

One ``Ready`` condition with a Reason constant and a message a user can act on; Lambda's
``state``; ``observedGeneration``. ``lastTransitionTime`` only moves when the condition's status
does, as Kubernetes conventions ask.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from klambda.api.objects import ApiObject
from klambda.api.routes import EventSource

if TYPE_CHECKING:
    from klambda.api.publishing import Assignment

READY = "Ready"
# Reasons
REASON_READY = "EnvironmentReady"
REASON_RECONCILING = "Reconciling"
REASON_THROTTLED = "Throttled"
REASON_ALIAS_READY = "AliasReady"
REASON_PROVISIONING = "Provisioning"


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
        "lastTransitionTime": (
            (now or _now()) if old is None or changed else old["lastTransitionTime"]
        ),
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
    warning: str | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """Status of a Function's $LATEST.

    ``current``: a shim runs the latest configuration; ``serving``: some shim (maybe an older
    configuration) takes invocations; ``failure``: why the latest configuration did not start;
    ``warning``: a setting that cannot be honoured (e.g. a reservation that does not fit).
    """
    if current and fn.spec.reserved_concurrency == 0:
        status, reason, state = "False", REASON_THROTTLED, "Active"
        message = "reservedConcurrency is 0: every invocation is throttled (429)"
    elif current:
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
    if warning:
        message += f"; {warning}"
    conditions = [
        ready_condition(previous.get("conditions", []), status, reason, message, fn.generation, now)
    ]
    last_modified = previous.get("lastModified") or ""
    if previous.get("observedGeneration") != fn.generation:
        last_modified = now or _now()
    return {
        **previous,
        "observedGeneration": fn.generation,
        "conditions": conditions,
        "state": state,
        "url": url,
        "codeSha256": code_sha256 or previous.get("codeSha256", ""),
        "lastModified": last_modified,
    }


def version_status(
    a: Assignment, previous: dict[str, Any], now: str | None = None
) -> dict[str, Any]:
    """Status of a Version object after publishing: its number and snapshot, or why not."""
    ok = a.version is not None
    waiting = a.reason in ("FunctionNotReady",)
    cond = ready_condition(
        previous.get("conditions", []),
        "True" if ok else "Unknown" if waiting else "False",
        a.reason,
        a.message,
        a.obj.generation,
        now,
    )
    out: dict[str, Any] = {**previous, "observedGeneration": a.obj.generation, "conditions": [cond]}
    if ok and a.snapshot is not None:
        out.update(
            version=a.version,
            codeSha256=a.snapshot.code_sha256,
            configHash=a.snapshot.config_hash,
            functionSpec=a.snapshot.function_spec,
        )
    return out


def alias_status(
    obj: ApiObject,
    *,
    arn: str,
    url: str,
    problem: tuple[str, str] | None,
    provisioned: tuple[int, int, int],
    now: str | None = None,
) -> dict[str, Any]:
    requested, allocated, ready = provisioned
    if problem is not None:
        status, (reason, message) = "False", problem
    elif ready < allocated:
        status, reason = "False", REASON_PROVISIONING
        message = f"{ready} of {allocated} provisioned environments ready"
    else:
        status, reason, message = "True", REASON_ALIAS_READY, "routing invocations"
    out: dict[str, Any] = {
        "observedGeneration": obj.generation,
        "conditions": [
            ready_condition(
                obj.status.get("conditions", []), status, reason, message, obj.generation, now
            )
        ],
        "aliasArn": arn,
        "url": url,
    }
    if requested or allocated:
        out["provisionedConcurrency"] = {
            "requested": requested,
            "allocated": allocated,
            "ready": ready,
        }
    return out


def event_source_status(
    obj: ApiObject, source: EventSource, now: str | None = None
) -> dict[str, Any]:
    enabled = bool(obj.spec.enabled)
    problem = source.problem
    if problem is not None:
        status, (reason, message) = "False", problem
    elif enabled:
        status, reason, message = "True", "Polling", "delivering the queue's messages"
    else:
        status, reason, message = "True", "Disabled", "enabled is false: messages wait"
    return {
        "observedGeneration": obj.generation,
        "conditions": [
            ready_condition(
                obj.status.get("conditions", []), status, reason, message, obj.generation, now
            )
        ],
        "state": "Enabled" if enabled else "Disabled",
        "eventSourceArn": source.configuration["EventSourceArn"],
        "functionArn": source.configuration["FunctionArn"],
    }
