"""What a Schedule does with its firing times (pure): firings in a span, missed firings after
an outage, flexible windows, the event it sends. The expressions themselves are parsed in
``schedule_expressions``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from klambda.api.schedule_expressions import (
    DEFAULT_MAXIMUM_EVENT_AGE,
    SKIP_COUNT_CAP,
    Expression,
    ScheduleError,
    _utc,
    parse,
)

__all__ = [
    "DEFAULT_MAXIMUM_EVENT_AGE",
    "Expression",
    "MissedFirings",
    "ScheduleError",
    "firing_id",
    "firings_between",
    "flexible_delay",
    "missed_policy",
    "parse",
    "scheduled_event",
]


def firings_between(
    expression: Expression, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Firings in (after, until], oldest first, at most ``limit`` of them."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    until = _utc(until, "until")
    found: list[datetime] = []
    for fired in islice(expression.iter_after(after), limit):
        if fired > until:
            break
        found.append(fired)
    return found


@dataclass(frozen=True)
class MissedFirings:
    """``deliver``: each firing still younger than the maximum event age, once, oldest first.
    ``skipped``: how many were older (up to SKIP_COUNT_CAP), to log and count; they are what
    EventBridge Scheduler would send to a dead-letter queue. ``resume_after``: the next call's
    ``since``, ``now`` unless ``limit`` held firings back (they come next time)."""

    deliver: tuple[datetime, ...]
    skipped: int
    resume_after: datetime


def missed_policy(
    expression: Expression,
    *,
    since: datetime,
    now: datetime,
    maximum_event_age_seconds: int = DEFAULT_MAXIMUM_EVENT_AGE,
    limit: int = 100,
) -> MissedFirings:
    """The firings in (since, now]: delivered when younger than the retry policy's maximum
    event age, skipped and counted when older.

    EventBridge Scheduler does not backfill, but each firing is an event of its own, retried
    for "the maximum amount of time, in seconds, to continue to make retry attempts" from when
    it was due (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html).
    So after an outage every firing still within that age is delivered, once each: nothing in
    the service coalesces events into the latest one. Age counts from the scheduled time,
    before any flexible delay. Called every tick with the last ``resume_after`` as ``since``,
    this is also how due firings are found."""
    if not 60 <= maximum_event_age_seconds <= DEFAULT_MAXIMUM_EVENT_AGE:
        raise ScheduleError(
            "invalid retry policy: maximumEventAgeInSeconds must be between 60 and 86400, "
            f"got {maximum_event_age_seconds}"
        )
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    since, now = _utc(since, "since"), _utc(now, "now")
    if now <= since:
        return MissedFirings((), 0, since)
    cutoff = now - timedelta(seconds=maximum_event_age_seconds)
    skipped = (
        len(firings_between(expression, since, cutoff, SKIP_COUNT_CAP)) if cutoff > since else 0
    )
    due = firings_between(expression, max(since, cutoff), now, limit + 1)
    if len(due) > limit:
        return MissedFirings(tuple(due[:limit]), skipped, due[limit - 1])
    return MissedFirings(tuple(due), skipped, now)


def flexible_delay(mode: str, maximum_window_minutes: int | None, seed: str) -> float:
    """Seconds after the scheduled time to invoke: 0 when ``mode`` is OFF; with FLEXIBLE, in
    [0, window), as a 15-minute window "invokes the target within 15 minutes after the
    scheduled time" (UserGuide/managing-schedule-flexible-time-windows.html). It is a hash of
    ``seed`` (the schedule ARN and firing time, say), not a random draw, so replicas agree."""
    if mode == "OFF":
        return 0.0
    if mode != "FLEXIBLE":
        raise ScheduleError(
            f'invalid flexibleTimeWindow: mode must be OFF or FLEXIBLE, not "{mode}"'
        )
    if maximum_window_minutes is None or not 1 <= maximum_window_minutes <= 1440:
        raise ScheduleError(
            "invalid flexibleTimeWindow: maximumWindowInMinutes must be between 1 and 1440 "
            f"when mode is FLEXIBLE, got {maximum_window_minutes}"
        )
    draw = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    return draw % (maximum_window_minutes * 60_000) / 1000  # whole milliseconds, below the window


def firing_id(schedule_arn: str, fired_at: datetime) -> str:
    """A UUID-shaped event id, the same on every replica for one firing, to deduplicate by."""
    key = f"{schedule_arn}@{_utc(fired_at, 'fired_at').isoformat()}"
    h = hashlib.sha256(key.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def scheduled_event(
    *, schedule_arn: str, region: str, account: str, fired_at: datetime, event_id: str
) -> dict[str, object]:
    """EventBridge's "Scheduled Event", the shape Lambda gets from a scheduled rule (and
    aws-lambda-powertools' EventBridgeEvent reads); ``time`` is UTC to the second, with Z."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _utc(fired_at, "fired_at").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [schedule_arn],
        "detail": {},
    }
