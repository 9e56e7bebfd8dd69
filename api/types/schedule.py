"""The Schedule kind: a rate, cron or one-time expression invoking a function asynchronously
(EventBridge Scheduler's CreateSchedule, with a Lambda target)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from klambda.api.schedule_expressions import ScheduleError, parse
from klambda.api.schema import prop
from klambda.api.types.common import Condition, Problems
from klambda.api.types.queue import QUEUE_NAME_MAX, QUEUE_NAME_PATTERN

MAX_INPUT = 256 * 1024
DEFAULT_RETRY_ATTEMPTS = 185
DEFAULT_EVENT_AGE = 86400


@dataclass(frozen=True)
class ScheduleTarget:
    """The function invoked, and what with."""

    function: str = prop(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:(\$LATEST|[a-zA-Z0-9_-]+))?$",
        max_length=192,
        pattern_message="must be NAME or NAME:QUALIFIER (a function of this namespace)",
        doc="A function of this namespace, NAME[:QUALIFIER], invoked asynchronously.",
    )
    input: str | None = prop(
        default=None,
        max_length=MAX_INPUT,
        doc="The event, as JSON text; EventBridge's scheduled-event document when omitted.",
    )

    def check(self) -> Problems:
        if self.input is not None:
            try:
                json.loads(self.input)
            except ValueError as e:
                yield ".input", f"must be JSON: {e}"


@dataclass(frozen=True)
class FlexibleTimeWindow:
    """A window after each firing time to spread invocations over (EventBridge Scheduler's)."""

    __cel__ = (
        (
            "self.mode != 'FLEXIBLE' || has(self.maximumWindowInMinutes)",
            "mode FLEXIBLE needs maximumWindowInMinutes",
        ),
    )

    mode: Literal["OFF", "FLEXIBLE"] = prop(default="OFF", doc="OFF: invoke at the firing time.")
    maximum_window_in_minutes: int | None = prop(
        default=None,
        minimum=1,
        maximum=1440,
        doc="FLEXIBLE: invoke within this many minutes after the firing time.",
    )

    def check(self) -> Problems:
        if self.mode == "FLEXIBLE" and self.maximum_window_in_minutes is None:
            yield "", "mode FLEXIBLE needs maximumWindowInMinutes"


@dataclass(frozen=True)
class ScheduleRetryPolicy:
    """How long a firing that cannot be handed over is tried (EventBridge Scheduler's)."""

    maximum_retry_attempts: int = prop(
        default=DEFAULT_RETRY_ATTEMPTS, minimum=0, maximum=185, doc="Attempts after the first."
    )
    maximum_event_age_in_seconds: int = prop(
        default=DEFAULT_EVENT_AGE,
        minimum=60,
        maximum=DEFAULT_EVENT_AGE,
        doc="A firing older than this is given up (also firings missed while klambda was down).",
    )


@dataclass(frozen=True)
class ScheduleDeadLetter:
    """Where firings that could not be handed over go."""

    queue: str = prop(
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A Queue of this namespace; the message is the event, with attributes saying why.",
    )


@dataclass(frozen=True)
class ScheduleSpec:
    """When to invoke a function, and with what."""

    schedule_expression: str = prop(
        max_length=256,
        doc="rate(5 minutes), cron(0 12 * * ? *) (EventBridge's six fields) or "
        "at(2026-12-24T18:00:00).",
    )
    target: ScheduleTarget = prop(doc="The function invoked at each firing.")
    timezone: str = prop(
        default="UTC",
        max_length=64,
        doc="IANA time zone cron and at expressions are read in (rate ignores it).",
    )
    state: Literal["ENABLED", "DISABLED"] = prop(default="ENABLED", doc="DISABLED: no firing.")
    flexible_time_window: FlexibleTimeWindow | None = prop(
        default=None, doc="Spread each firing over a window (OFF when omitted)."
    )
    retry_policy: ScheduleRetryPolicy | None = prop(
        default=None, doc="185 attempts within 24 hours when omitted, as EventBridge's."
    )
    dead_letter_config: ScheduleDeadLetter | None = prop(
        default=None, doc="Where firings given up on go; logged and counted when omitted."
    )

    def check(self) -> Problems:
        try:
            parse(self.schedule_expression, self.timezone)
        except ScheduleError as e:
            where = ".timezone" if str(e).startswith("invalid timezone") else ".scheduleExpression"
            yield where, str(e)


@dataclass(frozen=True)
class ScheduleStatus:
    """When it fires next, and when it last did."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    schedule_arn: str = prop(default="", doc="The schedule's ARN (arn:aws:scheduler:...).")
    next_firing: str = prop(default="", doc="The next firing time (RFC 3339), if any.")
    last_firing: str = prop(default="", doc="The last firing handed over (RFC 3339), if any.")
    enabled_since: str = prop(
        default="",
        doc="When the schedule was last enabled (RFC 3339): firings due while it was DISABLED "
        "are not sent, as with EventBridge Scheduler.",
    )
