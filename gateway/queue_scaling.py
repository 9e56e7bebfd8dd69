"""How many batches of a queue mapping are in flight: Lambda's SQS scaling rule, decided
without I/O (the scaler in ``queue_scaler`` observes the queue and applies it).

Lambda's current rule (docs, "Configuring scaling behavior for SQS event source mappings",
services-sqs-scaling.html): a mapping starts with five concurrent batches; while messages are
still available it adds up to 300 more per minute (the 2022 docs said 60), up to 1,000 batches
per mapping; when traffic is low it scales back to five. ``scalingConfig.maximumConcurrency``
caps it (2-1,000), and so does the function's reserved concurrency: a batch is an invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from klambda.api.types import MOST_BATCHES, START_BATCHES

ADDED_PER_MINUTE = 300
IDLE_SECONDS = 60.0
"""Backlog empty this long: back down to the busy batches (at least the start)."""


def cap_of(maximum_concurrency: int | None, reserved_concurrency: int | None) -> int:
    """The most batches in flight: the mapping's limit, the function's reserved concurrency."""
    cap = MOST_BATCHES if maximum_concurrency is None else maximum_concurrency
    if reserved_concurrency is not None:
        cap = min(cap, reserved_concurrency)
    return max(0, cap)


@dataclass(frozen=True)
class Scale:
    """The scaler's state: the target batches in flight and since when the queue was idle."""

    target: int = START_BATCHES
    idle_since: float | None = None
    added: float = 0.0
    """Additions earned but not yet made (300 a minute is 5 a second; ticks are uneven)."""


@dataclass(frozen=True)
class Observed:
    """One look at the queue: batches' worth of messages waiting (visible), batches being
    processed."""

    backlog: int
    busy: int
    now: float
    elapsed: float
    """Seconds since the previous look."""


def step(scale: Scale, seen: Observed, cap: int) -> Scale:
    """The next target. Up while messages wait (the batches in flight do not take them), by
    no more than the waiting batches and ADDED_PER_MINUTE; down to what is busy after
    IDLE_SECONDS without a backlog; always within [min(START_BATCHES, cap), cap]."""
    floor = min(START_BATCHES, cap)
    target = min(cap, max(floor, scale.target))
    if seen.backlog > 0:
        earned = scale.added + ADDED_PER_MINUTE * max(0.0, seen.elapsed) / 60.0
        grow = max(0, min(int(earned), cap - target, seen.backlog))
        return Scale(target + grow, None, min(earned - grow, ADDED_PER_MINUTE / 60.0))
    idle_since = seen.now if scale.idle_since is None else scale.idle_since
    if seen.now - idle_since >= IDLE_SECONDS:
        target = min(target, max(floor, seen.busy))
    return replace(scale, target=target, idle_since=idle_since, added=0.0)
