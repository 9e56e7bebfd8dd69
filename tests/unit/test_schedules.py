"""What schedules do with firing times: spans, missed firings after an outage, flexible
windows and the scheduled-event shape (klambda.api.schedules)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from klambda.api.schedule_expressions import SKIP_COUNT_CAP
from klambda.api.schedules import (
    ScheduleError,
    firing_id,
    firings_between,
    flexible_delay,
    missed_policy,
    parse,
    scheduled_event,
)
from tests.unit.test_schedule_expressions import NEW_YORK, jan, utc

WINDOW = "invalid flexibleTimeWindow: maximumWindowInMinutes must be between 1 and 1440 when "


@pytest.mark.parametrize(
    ("until", "limit", "expected"),
    [
        (jan(1, 1), 100, 4),  # (00:00, 01:00]: 00:15, 00:30, 00:45, 01:00
        (jan(1, 1), 2, 2),
        (jan(1, 1), 0, 0),
        (jan(1, 0, 14), 100, 0),
        (jan(2), 1000, 96),
    ],
)
def test_firings_between_is_bounded_by_until_and_limit(
    until: datetime, limit: int, expected: int
) -> None:
    found = firings_between(parse("cron(0/15 * * * ? *)"), jan(1), until, limit)
    assert len(found) == expected and found == sorted(found) and all(t <= until for t in found)
    with pytest.raises(ValueError, match="negative"):
        firings_between(parse("cron(0/15 * * * ? *)"), jan(1), until, -1)


def ten(hour: int, minute: int = 0) -> datetime:
    return utc(2026, 1, 10, hour, minute)


HOURLY = parse("rate(1 hour)", anchor=jan(1))
NOW = ten(12, 30)


@pytest.mark.parametrize(
    ("since", "age", "limit", "deliver", "skipped", "resume"),
    [
        # up: the firing due since the last tick is delivered
        (ten(11, 30), 86400, 100, [ten(12)], 0, NOW),
        (ten(12, 10), 86400, 100, [], 0, NOW),
        # down for 3 hours: every firing within the age is delivered, each once
        (ten(9, 30), 86400, 100, [ten(h) for h in (10, 11, 12)], 0, NOW),
        # the age cuts: 12:00 is 30 minutes old, 11:00 90 minutes (older than an hour)
        (ten(9, 30), 3600, 100, [ten(12)], 2, NOW),
        (ten(9, 30), 60, 100, [], 3, NOW),
        # exactly as old as the maximum age: too old
        (ten(10, 30), 5400, 100, [ten(12)], 1, NOW),
        # down for 9 days: 24 hours' worth delivered, the rest counted
        (jan(1, 0, 30), 86400, 100, [jan(9, 13) + timedelta(hours=h) for h in range(24)], 204, NOW),
        # the limit holds firings back for the next call
        (ten(9, 30), 86400, 2, [ten(10), ten(11)], 0, ten(11)),
        # nothing has happened yet
        (NOW, 86400, 100, [], 0, NOW),
        (NOW + timedelta(hours=1), 86400, 100, [], 0, NOW + timedelta(hours=1)),
    ],
)
def test_missed_firings_are_delivered_within_the_maximum_event_age(
    since: datetime, age: int, limit: int, deliver: list[datetime], skipped: int, resume: datetime
) -> None:
    missed = missed_policy(HOURLY, since=since, now=NOW, maximum_event_age_seconds=age, limit=limit)
    assert (list(missed.deliver), missed.skipped, missed.resume_after) == (deliver, skipped, resume)


def test_firings_held_back_by_the_limit_are_delivered_next_time() -> None:
    since, delivered, skipped = ten(2, 30), [], 0
    while True:
        missed = missed_policy(
            HOURLY, since=since, now=NOW, maximum_event_age_seconds=36000, limit=3
        )
        delivered += missed.deliver
        skipped += missed.skipped
        if missed.resume_after == NOW:
            break
        since = missed.resume_after
    assert delivered == [ten(h) for h in range(3, 13)] and skipped == 0


def test_missed_firings_of_a_cron_and_an_at() -> None:
    cron = parse("cron(* * * * ? *)")
    missed = missed_policy(cron, since=utc(2025, 1, 1), now=NOW, maximum_event_age_seconds=120)
    assert missed.deliver == (NOW - timedelta(minutes=1), NOW) and missed.skipped == SKIP_COUNT_CAP
    at = parse("at(2026-01-10T12:00:00)")
    assert missed_policy(at, since=ten(0), now=NOW).deliver == (ten(12),)
    late = missed_policy(at, since=ten(0), now=NOW, maximum_event_age_seconds=600)
    assert late.deliver == () and late.skipped == 1


@pytest.mark.parametrize("age", [0, 59, 86401])
def test_a_maximum_event_age_out_of_range_is_refused(age: int) -> None:
    with pytest.raises(ScheduleError) as refused:
        missed_policy(HOURLY, since=NOW, now=NOW, maximum_event_age_seconds=age)
    assert str(refused.value) == (
        f"invalid retry policy: maximumEventAgeInSeconds must be between 60 and 86400, got {age}"
    )


@pytest.mark.parametrize("window", [1, 15, 1440])
def test_a_flexible_delay_is_deterministic_and_within_the_window(window: int) -> None:
    seeds = [f"arn:aws:scheduler:us-east-1:123456789012:schedule/default/s@{n}" for n in range(400)]
    delays = [flexible_delay("FLEXIBLE", window, seed) for seed in seeds]
    assert delays == [flexible_delay("FLEXIBLE", window, seed) for seed in seeds]
    assert all(0 <= delay < window * 60 for delay in delays)
    assert len(set(delays)) > 390  # spread, not clustered
    assert min(delays) < window * 6 and max(delays) > window * 54


def test_no_flexible_window_means_no_delay() -> None:
    assert flexible_delay("OFF", None, "x") == 0.0 and flexible_delay("OFF", 15, "x") == 0.0


@pytest.mark.parametrize(
    ("mode", "window", "message"),
    [
        ("on", 15, 'invalid flexibleTimeWindow: mode must be OFF or FLEXIBLE, not "on"'),
        (
            "flexible",
            15,
            'invalid flexibleTimeWindow: mode must be OFF or FLEXIBLE, not "flexible"',
        ),
        ("FLEXIBLE", None, WINDOW + "mode is FLEXIBLE, got None"),
        ("FLEXIBLE", 0, WINDOW + "mode is FLEXIBLE, got 0"),
        ("FLEXIBLE", 1441, WINDOW + "mode is FLEXIBLE, got 1441"),
    ],
)
def test_a_bad_flexible_window_is_refused(mode: str, window: int | None, message: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        flexible_delay(mode, window, "seed")
    assert str(refused.value) == message


ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightly"


@pytest.mark.parametrize(
    "fired_at",
    [
        utc(2026, 12, 1, 12),
        utc(2026, 12, 1, 12, 0, 0, 999999),
        datetime(2026, 12, 1, 7, tzinfo=NEW_YORK),
    ],
)
def test_the_scheduled_event_shape(fired_at: datetime) -> None:
    assert scheduled_event(
        schedule_arn=ARN,
        region="us-east-1",
        account="123456789012",
        fired_at=fired_at,
        event_id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    ) == {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [ARN],
        "detail": {},
    }


def test_a_firing_id_is_the_same_for_one_firing_on_every_replica() -> None:
    one = firing_id(ARN, utc(2026, 12, 1, 12))
    assert one == firing_id(ARN, datetime(2026, 12, 1, 7, tzinfo=NEW_YORK))
    assert one != firing_id(ARN, utc(2026, 12, 1, 12, 1)) != firing_id(ARN + "x", utc(2026, 12, 1))
    assert [len(part) for part in one.split("-")] == [8, 4, 4, 4, 12]
