"""The Queue and Stream kinds: where event sources read from and destinations write to.

A Queue has SQS's semantics (visibility timeout, retention, delay, redrive, FIFO); a Stream has
Kinesis's (shards, retention; records are read, never removed, by each mapping on its own).
Their attributes live here, not on the mappings that read them, so two mappings of one queue
cannot disagree about its visibility timeout or where its poison messages go.
"""

from __future__ import annotations

from dataclasses import dataclass

from klambda.api.schema import prop
from klambda.api.types.common import Condition, Problems, object_name_problems

QUEUE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Queue or Stream is named like any Kubernetes object (lower case, digits, '-', '.')."""
QUEUE_NAME_MAX = 80


def source_name_problems(name: object) -> list[str]:
    """Why ``name`` cannot name a Queue or Stream (empty when it can): a Kubernetes object
    name (a DNS subdomain, so ``orders.fifo`` is one) of at most 80 characters, SQS's limit."""
    return object_name_problems(
        name,
        QUEUE_NAME_PATTERN,
        f"queue and stream names are at most {QUEUE_NAME_MAX} characters",
        QUEUE_NAME_MAX,
        "alphanumeric characters, '-' or '.'",
    )


DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_RETENTION = 345600
MAX_RETENTION = 1209600
MAX_DELAY = 900
MAX_SHARDS = 64


@dataclass(frozen=True)
class RedrivePolicy:
    """Where messages go that keep failing (SQS's RedrivePolicy)."""

    dead_letter_queue: str = prop(
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A Queue of this namespace that takes the messages (a FIFO queue's must be FIFO).",
    )
    max_receive_count: int = prop(
        minimum=1,
        maximum=1000,
        doc="Receives after which a message goes to deadLetterQueue instead of a function.",
    )


@dataclass(frozen=True)
class QueueSpec:
    """A queue on Redis with SQS's semantics."""

    __cel__ = (
        (
            "!has(self.contentBasedDeduplication) || !self.contentBasedDeduplication "
            "|| (has(self.fifo) && self.fifo)",
            "contentBasedDeduplication needs fifo: true",
        ),
    )

    visibility_timeout: int = prop(
        default=DEFAULT_VISIBILITY_TIMEOUT,
        minimum=0,
        maximum=43200,
        doc="Seconds a received message stays hidden before it is delivered again (SQS's "
        "VisibilityTimeout); at least the timeout of every function a mapping feeds from it.",
    )
    message_retention_period: int = prop(
        default=DEFAULT_RETENTION,
        minimum=60,
        maximum=MAX_RETENTION,
        doc="Seconds a message is kept before it is deleted unread (SQS's "
        "MessageRetentionPeriod; 4 days when omitted).",
    )
    delay_seconds: int = prop(
        default=0,
        minimum=0,
        maximum=MAX_DELAY,
        doc="Seconds a new message stays hidden before its first delivery (SQS's DelaySeconds).",
    )
    redrive_policy: RedrivePolicy | None = prop(
        default=None, doc="Where messages go after maxReceiveCount receives."
    )
    fifo: bool = prop(
        default=False,
        doc="First-in-first-out: the messages of one message group are delivered in order, one "
        "batch of a group at a time; sends are deduplicated for 5 minutes.",
    )
    content_based_deduplication: bool = prop(
        default=False,
        doc="FIFO only: a message sent without a deduplication id is deduplicated by the "
        "SHA-256 of its body.",
    )

    def check(self) -> Problems:
        if self.content_based_deduplication and not self.fifo:
            yield ".contentBasedDeduplication", "contentBasedDeduplication needs fifo: true"


@dataclass(frozen=True)
class QueueStatus:
    """What the queue holds, approximately (SQS's Approximate* attributes)."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    queue_arn: str = prop(default="", doc="The queue's ARN (arn:aws:sqs:...).")
    approximate_number_of_messages: int = prop(default=0, doc="Messages waiting to be received.")
    approximate_number_of_messages_not_visible: int = prop(
        default=0, doc="Messages received and not yet deleted (in flight)."
    )
    approximate_number_of_messages_delayed: int = prop(
        default=0, doc="Messages not yet visible (delaySeconds, or delayed retries)."
    )
    oldest_message_age: int = prop(default=0, doc="Seconds since the oldest message was sent.")


@dataclass(frozen=True)
class StreamSpec:
    """A sharded stream on Redis with Kinesis's semantics."""

    shards: int = prop(
        default=1,
        minimum=1,
        maximum=MAX_SHARDS,
        doc="Shards; a record's partition key picks its shard (the MD5 hash, as Kinesis). "
        "Records of one shard are read in order.",
    )
    retention_hours: int = prop(
        default=24,
        minimum=1,
        maximum=8760,
        doc="Hours a record is kept. Reading does not remove records: every mapping of the "
        "stream reads all of them, each from its own checkpoint.",
    )


@dataclass(frozen=True)
class ShardStatus:
    """One shard: its id, its record count and its newest record."""

    shard_id: str = prop(doc="The shard's id (shardId-000000000000, ...).")
    records: int = prop(default=0, doc="Records kept.")
    newest_sequence_number: str = prop(default="", doc="Sequence number of the newest record.")


@dataclass(frozen=True)
class StreamStatus:
    """The stream's shards and what they hold."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    stream_arn: str = prop(default="", doc="The stream's ARN (arn:aws:kinesis:...).")
    shards: list[ShardStatus] = prop(default_factory=list, doc="Each shard, in order.")
    records: int = prop(default=0, doc="Records kept, all shards.")
