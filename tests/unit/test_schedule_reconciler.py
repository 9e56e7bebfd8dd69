"""The Schedule reconciler: what the scheduler fires, and the status users read."""

from __future__ import annotations

import time
from typing import Any

import pytest

from klambda.api.objects import ApiObject, parse_object
from klambda.api.schema import ValidationError
from klambda.controller.schedules import ScheduleReconciler
from klambda.controller.store import ObjectStore
from tests.unit.test_function_reconciler import Routes, function


def schedule(name: str = "nightly", **spec: Any) -> ApiObject:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"scheduleExpression": "cron(0 3 * * ? *)", "target": {"function": "fn"}, **spec},
    }
    return parse_object(doc)


def ready(store: ObjectStore, name: str = "nightly") -> tuple[str, str]:
    (cond,) = store.get("Schedule", "default", name).status["conditions"]
    return cond["status"], cond["reason"]


async def test_an_enabled_schedule_of_an_existing_function_is_fired() -> None:
    store, routes = ObjectStore(), Routes()
    schedules = ScheduleReconciler(store, routes, "us-east-1")
    await store.apply(schedule())
    assert await schedules.reconcile("default", "nightly") is not None  # looked at again
    assert ready(store) == ("False", "FunctionNotFound") and not routes.schedules
    await store.apply(function())
    await schedules.reconcile("default", "nightly")
    assert ready(store) == ("True", "Scheduled")
    route = routes.schedules[("default", "nightly")]
    assert route.arn.endswith(":schedule/default/nightly") and route.function == "fn"
    status = store.get("Schedule", "default", "nightly").status
    assert status["nextFiring"].endswith("T03:00:00Z")
    assert status["scheduleArn"] == route.arn
    await store.apply(schedule(state="DISABLED"))
    await schedules.reconcile("default", "nightly")
    assert ready(store) == ("True", "Disabled") and not routes.schedules  # no firing
    status = store.get("Schedule", "default", "nightly").status
    assert status["nextFiring"] == "" and status["enabledSince"] == ""
    created = route.enabled_since
    await store.apply(schedule(state="ENABLED"))  # enabled again: from now on, no backfill
    before = time.time()
    await schedules.reconcile("default", "nightly")
    again = routes.schedules[("default", "nightly")]
    assert again.enabled_since >= before - 0.001 > created
    stamp = store.get("Schedule", "default", "nightly").status["enabledSince"]
    assert stamp.endswith("Z")
    await schedules.reconcile("default", "nightly")  # kept, not moved on by each pass
    assert store.get("Schedule", "default", "nightly").status["enabledSince"] == stamp
    await store.delete("Schedule", "default", "nightly")
    await schedules.reconcile("default", "nightly")
    assert not routes.schedules


async def test_a_qualified_target_and_a_flexible_window() -> None:
    store, routes = ObjectStore(), Routes()
    await store.apply(function())
    await store.apply(
        schedule(
            target={"function": "fn:live", "input": '{"a": 1}'},
            flexibleTimeWindow={"mode": "FLEXIBLE", "maximumWindowInMinutes": 15},
            retryPolicy={"maximumRetryAttempts": 3, "maximumEventAgeInSeconds": 600},
            deadLetterConfig={"queue": "missed"},
        )
    )
    await ScheduleReconciler(store, routes, "us-east-1").reconcile("default", "nightly")
    route = routes.schedules[("default", "nightly")]
    assert (route.function, route.qualifier, route.input) == ("fn", "live", '{"a": 1}')
    assert (route.flexible_window_minutes, route.maximum_retry_attempts) == (15, 3)
    assert route.maximum_event_age == 600
    assert route.dead_letter_key == "klambda:queue:default:missed"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"scheduleExpression": "rate(5 minute)"}, 'invalid rate expression "rate(5 minute)"'),
        ({"scheduleExpression": "cron(0 12 * * * *)"}, "cannot both be set"),
        ({"timezone": "Mars/Olympus"}, 'spec.timezone: invalid timezone "Mars/Olympus"'),
        ({"target": {"function": "fn", "input": "{not json"}}, "spec.target.input: must be JSON"),
        ({"target": {"function": "Bad_Name"}}, "spec.target.function"),
        ({"flexibleTimeWindow": {"mode": "FLEXIBLE"}}, "needs maximumWindowInMinutes"),
        ({"retryPolicy": {"maximumEventAgeInSeconds": 30}}, "spec.retryPolicy"),
        ({"state": "PAUSED"}, "spec.state"),
    ],
)
def test_invalid_schedules(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        schedule(**spec)
    assert message in str(info.value)
