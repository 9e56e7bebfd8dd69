"""How each kind is named on the API (plural, short names, printer columns), and lookups."""

from __future__ import annotations

from klambda.api.types.alias import AliasSpec, AliasStatus
from klambda.api.types.common import (
    AGE_COLUMN,
    FUNCTION_NAME_MAX,
    READY_COLUMN,
    REASON_COLUMN,
    Column,
    Kind,
)
from klambda.api.types.event_source_mapping import (
    EventSourceMappingSpec,
    EventSourceMappingStatus,
)
from klambda.api.types.function import FunctionSpec, FunctionStatus
from klambda.api.types.queue import (
    QUEUE_NAME_MAX,
    QueueSpec,
    QueueStatus,
    StreamSpec,
    StreamStatus,
)
from klambda.api.types.schedule import ScheduleSpec, ScheduleStatus
from klambda.api.types.version import VersionSpec, VersionStatus

FUNCTION = Kind(
    "Function",
    "functions",
    "function",
    ("fn",),
    FunctionSpec,
    FunctionStatus,
    columns=(
        Column("Runtime", ".spec.runtime"),
        Column("State", ".status.state"),
        READY_COLUMN,
        REASON_COLUMN,
        Column("URL", ".status.url"),
        AGE_COLUMN,
    ),
    name_rules=(
        (
            f"self.metadata.name.size() <= {FUNCTION_NAME_MAX}",
            f"function names are at most {FUNCTION_NAME_MAX} characters",
        ),
        (
            "!self.metadata.name.contains('--')",
            "function names must not contain '--' (it separates the alias in URL ids)",
        ),
    ),
)
VERSION_KIND = Kind(
    "Version",
    "versions",
    "version",
    ("fnv",),
    VersionSpec,
    VersionStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Version", ".status.version"),
        READY_COLUMN,
        Column("Provisioned", ".status.provisionedConcurrency.ready", "integer", 1),
        Column("Description", ".spec.description", priority=1),
        AGE_COLUMN,
    ),
)
ALIAS_KIND = Kind(
    "Alias",
    "aliases",
    "alias",
    ("fna",),
    AliasSpec,
    AliasStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Version", ".spec.functionVersion"),
        Column("Weights", ".spec.routingConfig.additionalVersionWeights"),
        Column("Provisioned", ".status.provisionedConcurrency.ready", "integer"),
        READY_COLUMN,
        Column("URL", ".status.url", priority=1),
        AGE_COLUMN,
    ),
    name_rules=(
        (
            "has(self.spec.name) || !self.metadata.name.matches('^[0-9]+$')",
            "an alias name cannot be a number (numbers name versions): set spec.name",
        ),
    ),
)
ESM_KIND = Kind(
    "EventSourceMapping",
    "eventsourcemappings",
    "eventsourcemapping",
    ("esm",),
    EventSourceMappingSpec,
    EventSourceMappingStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Queue", ".spec.source.queue"),
        Column("Stream", ".spec.source.stream"),
        Column("State", ".status.state"),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
_QUEUE_NAME_RULES = (
    (
        f"self.metadata.name.size() <= {QUEUE_NAME_MAX}",
        f"queue and stream names are at most {QUEUE_NAME_MAX} characters",
    ),
)
QUEUE_KIND = Kind(
    "Queue",
    "queues",
    "queue",
    ("kq",),
    QueueSpec,
    QueueStatus,
    columns=(
        Column("FIFO", ".spec.fifo", "boolean"),
        Column("Messages", ".status.approximateNumberOfMessages", "integer"),
        Column("In-flight", ".status.approximateNumberOfMessagesNotVisible", "integer"),
        Column("Delayed", ".status.approximateNumberOfMessagesDelayed", "integer", 1),
        Column("Oldest", ".status.oldestMessageAge", "integer", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
    name_rules=_QUEUE_NAME_RULES,
)
STREAM_KIND = Kind(
    "Stream",
    "streams",
    "stream",
    ("ks",),
    StreamSpec,
    StreamStatus,
    columns=(
        Column("Shards", ".spec.shards", "integer"),
        Column("Records", ".status.records", "integer"),
        Column("Retention", ".spec.retentionHours", "integer", 1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
    name_rules=_QUEUE_NAME_RULES,
)
SCHEDULE_KIND = Kind(
    "Schedule",
    "schedules",
    "schedule",
    ("ksch",),
    ScheduleSpec,
    ScheduleStatus,
    columns=(
        Column("Schedule", ".spec.scheduleExpression"),
        Column("Target", ".spec.target.function"),
        Column("State", ".spec.state"),
        Column("Next", ".status.nextFiring"),
        Column("Last", ".status.lastFiring", priority=1),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        FUNCTION,
        VERSION_KIND,
        ALIAS_KIND,
        ESM_KIND,
        QUEUE_KIND,
        STREAM_KIND,
        SCHEDULE_KIND,
    )
}


def kind_named(word: str) -> str | None:
    """The kind a user means by ``word`` (kind, plural, singular or short name), as kubectl."""
    word = word.lower()
    if word in ("configmap", "configmaps", "cm"):
        return "ConfigMap"
    if word in ("secret", "secrets"):
        return "Secret"
    for k in KINDS.values():
        if word in (k.kind.lower(), k.plural, k.singular, *k.short_names):
            return k.kind
    return None
