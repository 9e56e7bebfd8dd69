"""Schedules as the world declares them (pure): whether each can fire, its scheduler route,
and when it fires next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from klambda.api.arn import account_for
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import ScheduleRoute, queue_key
from klambda.api.schedule_expressions import parse
from klambda.api.types import ScheduleSpec

CREATED_SLACK = timedelta(milliseconds=1)


def schedule_arn(region: str, account: str, name: str) -> str:
    """EventBridge Scheduler's ARN shape (every klambda schedule is in group ``default``)."""
    return f"arn:aws:scheduler:{region}:{account}:schedule/default/{name}"


def target_of(spec: ScheduleSpec) -> tuple[str, str | None]:
    name, _, qualifier = spec.target.function.partition(":")
    return name, qualifier or None


def schedule_problem(obj: ApiObject, function: ApiObject | None) -> tuple[Reason, str] | None:
    """Why the schedule cannot fire (its function does not exist); None when it can."""
    name, _ = target_of(obj.spec)
    if function is None:
        return Reason.FUNCTION_NOT_FOUND, f'Function "{name}" not found'
    return None


def created(obj: ApiObject) -> datetime:
    stamp = str(obj.manifest["metadata"].get("creationTimestamp", ""))
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


def schedule_route(obj: ApiObject, region: str) -> ScheduleRoute:
    spec: ScheduleSpec = obj.spec
    account = account_for(obj.namespace)
    name, qualifier = target_of(spec)
    window = spec.flexible_time_window
    retry = spec.retry_policy
    dead = spec.dead_letter_config
    return ScheduleRoute(
        namespace=obj.namespace,
        name=obj.name,
        uid=str(obj.manifest["metadata"].get("uid", "")),
        arn=schedule_arn(region, account, obj.name),
        expression=spec.schedule_expression,
        function=name,
        timezone=spec.timezone,
        anchor=created(obj).timestamp(),
        qualifier=qualifier,
        input=spec.target.input,
        flexible_window_minutes=(
            window.maximum_window_in_minutes if window and window.mode == "FLEXIBLE" else None
        ),
        maximum_event_age=retry.maximum_event_age_in_seconds if retry else 86400,
        maximum_retry_attempts=retry.maximum_retry_attempts if retry else 185,
        dead_letter_key=queue_key(obj.namespace, dead.queue) if dead else None,
        region=region,
        account=account,
    )


def next_firing(route: ScheduleRoute, after: datetime) -> datetime | None:
    """The schedule's first firing time after ``after`` (None: it has none left)."""
    anchor = datetime.fromtimestamp(route.anchor, UTC)
    expression = parse(route.expression, route.timezone, anchor=anchor)
    return expression.next_after(max(after, anchor - CREATED_SLACK))
