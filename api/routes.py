"""What the gateway needs to know to send an invocation somewhere.

The platform publishes one ``FunctionRoute`` per function: its URL settings and, per version,
the shim endpoints that run it (or why none can). Local mode publishes in-process; in
Kubernetes the gateway builds the same records from what it watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from klambda.api import defaults
from klambda.api.async_settings import AsyncSettings, Target
from klambda.api.policy import Policy
from klambda.api.reasons import Reason
from klambda.api.types import FunctionUrl

LATEST = "$LATEST"


@dataclass(frozen=True)
class VersionTarget:
    """Where one version runs: gRPC addresses of its shims, newest first."""

    version: str
    endpoints: tuple[str, ...] = ()
    timeout: float = 3.0
    problem: str | None = None
    """Why this version cannot run (e.g. its runtime is unavailable); None when it can."""
    problem_type: str = "ResourceNotReadyException"
    activatable: bool = False
    """No shim runs it now, but the platform starts one on demand."""
    configuration: dict[str, Any] = field(default_factory=dict)
    """Lambda's FunctionConfiguration of this version (for the read-only control plane)."""


@dataclass(frozen=True)
class AliasRoute:
    """An alias: its primary version, an optional weighted second one, its URL."""

    name: str
    primary: str
    weights: dict[str, float] = field(default_factory=dict)
    url: FunctionUrl | None = None
    description: str = ""
    revision_id: str = ""
    url_address: str = ""
    """The alias's function URL, when it has one."""


@dataclass(frozen=True)
class FunctionRoute:
    namespace: str
    name: str
    arn: str
    url: FunctionUrl | None = None
    versions: dict[str, VersionTarget] = field(default_factory=dict)
    aliases: dict[str, AliasRoute] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    """Honoured reservation (a cap and a guarantee); None when the function has none."""
    policy: Policy | None = None
    """The function's resource-based policy."""
    policy_document: dict[str, Any] | None = None
    """The same policy as written (GetPolicy returns it)."""
    account: str = ""
    """The account (from the namespace) that owns the function."""
    url_address: str = ""
    """The function URL of $LATEST, when it has one."""
    created: str = ""
    """When the function was created (ISO 8601)."""
    async_settings: dict[str, AsyncSettings] = field(default_factory=dict)
    """Asynchronous invocation settings per qualifier ($LATEST, version number, alias)."""

    def async_settings_of(self, qualifier: str | None) -> AsyncSettings:
        """The settings an async invocation of ``qualifier`` runs with."""
        return self.async_settings.get(qualifier or LATEST) or AsyncSettings()

    def url_id(
        self, qualifier: str | None = None, default_namespace: str = defaults.NAMESPACE
    ) -> str:
        return url_id(self.name, qualifier, self.namespace, default_namespace)


def url_id(
    name: str, qualifier: str | None, namespace: str, default_namespace: str = defaults.NAMESPACE
) -> str:
    """The URL id, shared by the host form (``<id>.<domain>``) and the path form.

    ``<function>[--<alias>][.<namespace>]``; the namespace is left out for the default one.
    """
    out = f"{name}--{qualifier}" if qualifier and qualifier != LATEST else name
    return out if namespace == default_namespace else f"{out}.{namespace}"


def parse_url_id(
    value: str, default_namespace: str = defaults.NAMESPACE
) -> tuple[str, str, str | None]:
    """(namespace, function, qualifier) of a URL id; the inverse of ``url_id``."""
    head, _, namespace = value.partition(".")
    name, _, qualifier = head.partition("--")
    return namespace or default_namespace, name, qualifier or None


QUEUE_KEY_PREFIX = "klambda:queue"
STREAM_KEY_PREFIX = "klambda:stream"


def queue_key(namespace: str, name: str) -> str:
    """The Redis stream that holds a queue's messages (docs/event-sources.md: the layout)."""
    return f"{QUEUE_KEY_PREFIX}:{namespace}:{name}"


def stream_key(namespace: str, name: str) -> str:
    """The prefix of a stream's keys: one Redis stream per shard, ``<prefix>:<shard index>``."""
    return f"{STREAM_KEY_PREFIX}:{namespace}:{name}"


@dataclass(frozen=True)
class Intake:
    """A Queue or Stream as its producers need it: what the gateway's SQS and Kinesis APIs
    write to, and how (a queue's FIFO rules and delay, a stream's shards)."""

    kind: str
    """``Queue`` or ``Stream``."""
    namespace: str
    name: str
    arn: str
    key: str
    """The queue's Redis stream, or the prefix of the stream's shard keys."""
    fifo: bool = False
    delay_seconds: int = 0
    content_based_deduplication: bool = False
    visibility_timeout: int = 30
    retention: int = 345600
    """A queue's messageRetentionPeriod (seconds)."""
    shards: int = 1
    retention_hours: int = 24


@dataclass(frozen=True)
class QueueCounts:
    """What a queue holds now (SQS's Approximate* attributes)."""

    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    oldest_age: float = 0.0
    """Seconds since the oldest message was sent (0 when empty)."""


@dataclass(frozen=True)
class ShardCounts:
    """What one shard of a stream holds now."""

    records: int = 0
    newest_sequence_number: str = ""


@dataclass(frozen=True)
class QueueRoute:
    """The queue a mapping reads, with the queue's own attributes."""

    key: str
    arn: str
    visibility_timeout: float = 30.0
    max_receive_count: int | None = None
    dead_letter_key: str | None = None
    fifo: bool = False
    retention: int = 345600
    """Seconds a message is kept (the Queue's messageRetentionPeriod)."""
    maximum_concurrency: int | None = None
    """Most batches in flight at once (the mapping's scalingConfig; None: Lambda's 1,000)."""


@dataclass(frozen=True)
class StreamRoute:
    """The stream a mapping reads, with the mapping's stream settings."""

    key: str
    arn: str
    shards: int = 1
    retention_hours: int = 24
    starting_position: str = "LATEST"
    starting_timestamp: float | None = None
    parallelization_factor: int = 1
    bisect: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age: int = -1
    on_failure: Target | None = None
    """Where a failed batch is reported (a queue, a stream or a function)."""
    tumbling_window: int = 0


@dataclass(frozen=True)
class EventSourceRoute:
    """One enabled event source mapping, as the pollers need it: its queue or its stream."""

    namespace: str
    name: str
    """The EventSourceMapping's name (its identity: a change of settings restarts its poller)."""
    function: str
    qualifier: str | None
    queue: QueueRoute | None = None
    stream: StreamRoute | None = None
    batch_size: int = 10
    batching_window: float = 0.0
    report_failures: bool = False
    region: str = defaults.REGION
    filters: tuple[str, ...] = ()
    """Filter patterns (JSON); a record matching none is not delivered."""
    uuid: str = ""
    """The mapping's uid (Lambda's UUID)."""

    @property
    def source_arn(self) -> str:
        if self.queue is not None:
            return self.queue.arn
        return self.stream.arn if self.stream is not None else ""


@dataclass(frozen=True)
class EventSource:
    """One EventSourceMapping as the platform sees it in a pass, worked out once."""

    namespace: str
    name: str
    problem: tuple[Reason, str] | None
    """Why it cannot deliver (reason, message); None when it can."""
    route: EventSourceRoute | None
    """What the gateway's pollers run; None when disabled or it cannot deliver."""
    configuration: dict[str, Any]
    """Lambda's EventSourceMappingConfiguration (the read-only control plane, and status)."""


@dataclass(frozen=True)
class ScheduleRoute:
    """One enabled Schedule whose function exists, as the gateway's scheduler needs it."""

    namespace: str
    name: str
    uid: str
    """The object's uid: a Schedule deleted and made again starts afresh."""
    arn: str
    expression: str
    function: str
    timezone: str = "UTC"
    anchor: float = 0.0
    """When it was created (epoch seconds): rate schedules fire from then on."""
    enabled_since: float = 0.0
    """When it was last enabled (epoch seconds): firings due while DISABLED are not sent."""
    qualifier: str | None = None
    input: str | None = None
    flexible_window_minutes: int | None = None
    """None: mode OFF."""
    maximum_event_age: int = 86400
    maximum_retry_attempts: int = 185
    dead_letter_key: str | None = None
    region: str = defaults.REGION
    account: str = ""

    @property
    def mark_key(self) -> str:
        """The Redis key holding the last firing handed over (epoch ms), claimed atomically."""
        return f"klambda:schedule:{self.namespace}:{self.name}:{self.uid}:last"
