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
    return _parsed(obj.manifest["metadata"].get("creationTimestamp", "")) or datetime.now(UTC)


def _parsed(stamp: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def enabled_since(obj: ApiObject, now: datetime) -> datetime | None:
    """Since when the schedule has been enabled (None: it is DISABLED): as its status says;
    for one just enabled again (its status still says Disabled), ``now``; for one never
    disabled, its creation (a rate schedule fires at once)."""
    if obj.spec.state != "ENABLED":
        return None
    found = _parsed(obj.status.get("enabledSince", ""))
    if found is not None:
        return found
    reasons = [c.get("reason") for c in obj.status.get("conditions", []) if isinstance(c, dict)]
    return now if Reason.DISABLED in reasons else created(obj)


def schedule_route(obj: ApiObject, region: str, now: datetime | None = None) -> ScheduleRoute:
    spec: ScheduleSpec = obj.spec
    since = enabled_since(obj, now or datetime.now(UTC))
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
        enabled_since=since.timestamp() if since else 0.0,
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
    since = datetime.fromtimestamp(max(route.anchor, route.enabled_since), UTC)
    expression = parse(route.expression, route.timezone, anchor=anchor)
    return expression.next_after(max(after, since - CREATED_SLACK))
