"""Status of each kind, computed (pure) from what the controller observed.

Each status is built as its kind's typed status (``api.types``: FunctionStatus, VersionStatus,
AliasStatus, EventSourceMappingStatus, QueueStatus, StreamStatus) and written in its wire form:
one ``Ready`` condition with a Reason and a message a user can act on, set by ``mark_ready`` /
``mark_failed`` / ``mark_unknown``; Lambda's ``state``; ``observedGeneration``.
``lastTransitionTime`` only moves when the condition's status does, as Kubernetes conventions
ask.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from klambda.api import schema
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import EventSource, QueueCounts, ShardCounts
from klambda.api.schema import ValidationError
from klambda.api.types import (
    AliasStatus,
    Condition,
    EventSourceMappingStatus,
    FunctionStatus,
    ProvisionedStatus,
    QueueStatus,
    ShardStatus,
    StreamStatus,
    VersionStatus,
)

if TYPE_CHECKING:
    from klambda.api.aliases import AliasPlan, FunctionPlan
    from klambda.api.publishing import Assignment

READY = "Ready"
S = TypeVar("S")


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
) -> Condition:
    """The Ready condition; its transition time moves only when its status does."""
    old = next((c for c in previous if c.get("type") == READY), None)
    changed = old is None or old.get("status") != status
    since = (now or _now()) if old is None or changed else str(old["lastTransitionTime"])
    return Condition(READY, status, reason, message, since, generation)


Mark = Callable[[list[dict[str, Any]], Reason, str, int, str | None], Condition]
"""One of the ``mark_*`` helpers below."""


def mark_ready(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> Condition:
    """Ready=True."""
    return ready_condition(previous, "True", reason, message, generation, now)


def mark_failed(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> Condition:
    """Ready=False: ``reason`` says why and whether waiting helps (``Reason.permanent``)."""
    return ready_condition(previous, "False", reason, message, generation, now)


def mark_unknown(
    previous: list[dict[str, Any]], reason: Reason, message: str, generation: int, now: str | None
) -> Condition:
    """Ready=Unknown: on its way."""
    return ready_condition(previous, "Unknown", reason, message, generation, now)


def _stored(cls: type[S], previous: dict[str, Any]) -> S:
    """The typed form of a stored status (its defaults when it is not one, e.g. written by
    an older klambda), so a new status keeps what the old one recorded."""
    try:
        return schema.parse(cls, previous, "status")
    except ValidationError:
        return cls()


def _wire(status: Any, previous: dict[str, Any]) -> dict[str, Any]:
    """``status`` in its wire form, over fields of ``previous`` it does not know."""
    return {**previous, **schema.dump(status)}


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
    state: Literal["Pending", "Active", "Inactive", "Failed"]
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
    old = _stored(FunctionStatus, previous)
    condition = mark(previous.get("conditions", []), reason, message, fn.generation, now)
    last_modified = old.last_modified
    if old.observed_generation != fn.generation:
        last_modified = now or _now()
    status = dataclasses.replace(
        old,
        observed_generation=fn.generation,
        conditions=[condition],
        state=state,
        url=url,
        code_sha256=code_sha256 or old.code_sha256,
        last_modified=last_modified,
    )
    return _wire(status, previous)


def version_status(
    a: Assignment, previous: dict[str, Any], now: str | None = None
) -> dict[str, Any]:
    """Status of a Version object after publishing: its number and snapshot, or why not."""
    ok = a.version is not None
    waiting = a.reason is Reason.FUNCTION_NOT_READY
    mark = mark_ready if ok else mark_unknown if waiting else mark_failed
    cond = mark(previous.get("conditions", []), a.reason, a.message, a.obj.generation, now)
    status = dataclasses.replace(
        _stored(VersionStatus, previous), observed_generation=a.obj.generation, conditions=[cond]
    )
    if ok and a.snapshot is not None:
        status = dataclasses.replace(
            status,
            version=a.version or "",
            code_sha256=a.snapshot.code_sha256,
            config_hash=a.snapshot.config_hash,
            function_spec=a.snapshot.function_spec,
        )
    return _wire(status, previous)


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
    status = AliasStatus(
        observed_generation=obj.generation,
        conditions=[mark(obj.status.get("conditions", []), reason, message, obj.generation, now)],
        alias_arn=arn,
        url=url,
        provisioned_concurrency=(
            ProvisionedStatus(requested, allocated, ready) if requested or allocated else None
        ),
    )
    return dict(schema.dump(status))


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
    if not requested and not obj.status.get("provisionedConcurrency"):
        return obj.status
    total = plan_.provisioned.get(number, 0)
    share = 0 if not total else min(requested, ready * requested // total)
    provisioned = ProvisionedStatus(requested, 0 if plan_.problem else requested, share)
    status = dataclasses.replace(
        _stored(VersionStatus, obj.status), provisioned_concurrency=provisioned
    )
    return _wire(status, obj.status)


def event_source_status(
    obj: ApiObject, source: EventSource, now: str | None = None
) -> dict[str, Any]:
    enabled = bool(obj.spec.enabled)
    problem = source.problem
    mark: Mark
    if problem is not None:
        mark, (reason, message) = mark_failed, problem
    elif enabled:
        what = "stream's records" if obj.spec.source.stream else "queue's messages"
        mark, reason, message = mark_ready, Reason.POLLING, f"delivering the {what}"
    else:
        mark, reason, message = mark_ready, Reason.DISABLED, "enabled is false: records wait"
    status = EventSourceMappingStatus(
        observed_generation=obj.generation,
        conditions=[mark(obj.status.get("conditions", []), reason, message, obj.generation, now)],
        state="Enabled" if enabled else "Disabled",
        event_source_arn=source.configuration["EventSourceArn"],
        function_arn=source.configuration["FunctionArn"],
    )
    return dict(schema.dump(status))


def queue_status(
    obj: ApiObject,
    arn: str,
    problem: tuple[Reason, str] | None,
    counts: QueueCounts | None,
    now: str | None = None,
) -> dict[str, Any]:
    """A Queue's status; ``counts`` None keeps the counts last written (Redis unread)."""
    previous = _stored(QueueStatus, obj.status)
    if problem is not None:
        condition = mark_failed(obj.status.get("conditions", []), *problem, obj.generation, now)
    else:
        message = "FIFO queue ready" if obj.spec.fifo else "queue ready"
        condition = mark_ready(
            obj.status.get("conditions", []), Reason.QUEUE_READY, message, obj.generation, now
        )
    status = dataclasses.replace(
        previous, observed_generation=obj.generation, conditions=[condition], queue_arn=arn
    )
    if counts is not None:
        status = dataclasses.replace(
            status,
            approximate_number_of_messages=counts.visible,
            approximate_number_of_messages_not_visible=counts.in_flight,
            approximate_number_of_messages_delayed=counts.delayed,
            oldest_message_age=int(counts.oldest_age),
        )
    return _wire(status, obj.status)


def stream_status(
    obj: ApiObject,
    arn: str,
    shard_ids: list[str],
    counts: list[ShardCounts] | None,
    now: str | None = None,
) -> dict[str, Any]:
    """A Stream's status; ``counts`` None keeps the counts last written (Redis unread)."""
    previous = _stored(StreamStatus, obj.status)
    message = f"{len(shard_ids)} shard(s)"
    condition = mark_ready(
        obj.status.get("conditions", []), Reason.STREAM_READY, message, obj.generation, now
    )
    shards = previous.shards
    if counts is not None:
        shards = [
            ShardStatus(
                shard_id=i, records=c.records, newest_sequence_number=c.newest_sequence_number
            )
            for i, c in zip(shard_ids, counts, strict=True)
        ]
    status = StreamStatus(
        observed_generation=obj.generation,
        conditions=[condition],
        stream_arn=arn,
        shards=shards,
        records=sum(s.records for s in shards),
    )
    return _wire(status, obj.status)
