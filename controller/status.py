"""Status of each kind, computed (pure) from what the controller observed.

One ``Ready`` condition with a Reason constant and a message a user can act on; Lambda's
``state``; ``observedGeneration``. ``lastTransitionTime`` only moves when the condition's status
does, as Kubernetes conventions ask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from klambda.api import schema
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import EventSource
from klambda.api.types import Condition

if TYPE_CHECKING:
    from klambda.api.aliases import AliasPlan, FunctionPlan
    from klambda.api.publishing import Assignment

READY = "Ready"


class FailureLike(Protocol):
    reason: Reason
    message: str
    permanent: bool


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


ConditionStatus = Literal["True", "False", "Unknown"]


def ready_condition(
    previous: list[dict[str, Any]],
    status: ConditionStatus,
    reason: Reason,
    message: str,
    generation: int,
    now: str | None = None,
) -> dict[str, Any]:
    """The Ready condition (typed: ``api.types.Condition``) in its wire form; its transition
    time moves only when its status does."""
    old = next((c for c in previous if c.get("type") == READY), None)
    changed = old is None or old.get("status") != status
    since = (now or _now()) if old is None or changed else str(old["lastTransitionTime"])
    condition = Condition(READY, status, reason, message, since, generation)
    return dict(schema.dump(condition))


Mark = Callable[[list[dict[str, Any]], Reason, str, int, str | None], dict[str, Any]]
"""One of the ``mark_*`` helpers below."""


def mark_ready(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> dict[str, Any]:
    """Ready=True."""
    return ready_condition(previous, "True", reason, message, generation, now)


def mark_failed(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> dict[str, Any]:
    """Ready=False: ``reason`` says why and whether waiting helps (``Reason.permanent``)."""
    return ready_condition(previous, "False", reason, message, generation, now)


def mark_unknown(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> dict[str, Any]:
    """Ready=Unknown: on its way."""
    return ready_condition(previous, "Unknown", reason, message, generation, now)


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
    mark: Mark
    if current and fn.spec.reserved_concurrency == 0:
        mark, reason, state = mark_failed, Reason.THROTTLED, "Active"
        message = "reservedConcurrency is 0: every invocation is throttled (429)"
    elif current:
        mark, reason, state = mark_ready, Reason.ENVIRONMENT_READY, "Active"
        message = "ready to serve invocations"
    elif failure is not None:
        mark, reason, state = mark_failed, failure.reason, "Active" if serving else "Failed"
        message = failure.message
        if serving:
            message += "; the previous configuration keeps serving"
    else:
        mark, reason, message, state = mark_unknown, Reason.RECONCILING, "starting", "Pending"
    if warning:
        message += f"; {warning}"
    conditions = [mark(previous.get("conditions", []), reason, message, fn.generation, now)]
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
    waiting = a.reason is Reason.FUNCTION_NOT_READY
    mark = mark_ready if ok else mark_unknown if waiting else mark_failed
    cond = mark(previous.get("conditions", []), a.reason, a.message, a.obj.generation, now)
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
    problem: tuple[Reason, str] | None,
    provisioned: tuple[int, int, int],
    now: str | None = None,
) -> dict[str, Any]:
    requested, allocated, ready = provisioned
    mark: Mark
    if problem is not None:
        mark, (reason, message) = mark_failed, problem
    elif ready < allocated:
        mark, reason = mark_failed, Reason.PROVISIONING
        message = f"{ready} of {allocated} provisioned environments ready"
    else:
        mark, reason, message = mark_ready, Reason.ALIAS_READY, "routing invocations"
    out: dict[str, Any] = {
        "observedGeneration": obj.generation,
        "conditions": [
            mark(obj.status.get("conditions", []), reason, message, obj.generation, now)
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


def alias_provisioned(
    a: AliasPlan, plan_: FunctionPlan, ready: dict[str, int]
) -> tuple[int, int, int]:
    """(requested, allocated, ready) provisioned environments of an alias; ``ready``: ready
    environments per version. A version shared with other provisioned configurations (its own
    or other aliases') is shared among them pro rata."""
    requested = a.obj.spec.provisioned_concurrency
    allocated = 0 if plan_.problem else sum(a.provisioned.values())
    share = 0
    for version, n in a.provisioned.items():
        total = plan_.provisioned.get(version, 0)
        if total:
            share += min(n, ready.get(version, 0) * n // total)
    return requested, allocated, share


def version_provisioned(
    obj: ApiObject, plan_: FunctionPlan, ready: int, number: str
) -> dict[str, Any]:
    """A Version's status with its own provisioned concurrency (its pro-rata share of the
    ``ready`` environments of version ``number``)."""
    requested = obj.spec.provisioned_concurrency
    status = dict(obj.status)
    if requested or status.get("provisionedConcurrency"):
        total = plan_.provisioned.get(number, 0)
        share = 0 if not total else min(requested, ready * requested // total)
        status["provisionedConcurrency"] = {
            "requested": requested,
            "allocated": 0 if plan_.problem else requested,
            "ready": share,
        }
    return status


def event_source_status(
    obj: ApiObject, source: EventSource, now: str | None = None
) -> dict[str, Any]:
    enabled = bool(obj.spec.enabled)
    problem = source.problem
    mark: Mark
    if problem is not None:
        mark, (reason, message) = mark_failed, problem
    elif enabled:
        mark, reason, message = mark_ready, Reason.POLLING, "delivering the queue's messages"
    else:
        mark, reason, message = mark_ready, Reason.DISABLED, "enabled is false: messages wait"
    return {
        "observedGeneration": obj.generation,
        "conditions": [
            mark(obj.status.get("conditions", []), reason, message, obj.generation, now)
        ],
        "state": "Enabled" if enabled else "Disabled",
        "eventSourceArn": source.configuration["EventSourceArn"],
        "functionArn": source.configuration["FunctionArn"],
    }
