"""EventBridge Scheduler expressions: syntax, firing times, daylight saving
(klambda.api.schedule_expressions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from klambda.api.schedule_expressions import At, Cron, Rate, ScheduleError, parse
from klambda.api.schedules import firings_between

NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *rest: int) -> datetime:
    second, micro = (*rest, 0, 0)[:2]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def jan(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A time in January 2026, which starts on a Thursday."""
    return utc(2026, 1, day, hour, minute)


def first(expression: str, after: datetime, count: int, timezone: str = "UTC") -> list[datetime]:
    return firings_between(parse(expression, timezone), after, after + timedelta(days=3660), count)


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        ("rate(90 minutes)", timedelta(minutes=90)),
    ],
)
def test_rate_values_and_units(expression: str, period: timedelta) -> None:
    parsed = parse(expression, "America/New_York")
    assert isinstance(parsed, Rate) and parsed.period == period and parsed.anchor is None


ANCHOR = utc(2026, 3, 7, 12, 0, 30)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (ANCHOR - timedelta(days=1), ANCHOR),  # the anchor itself is the first firing
        (ANCHOR, ANCHOR + timedelta(hours=6)),
        (ANCHOR + timedelta(hours=5, minutes=59), ANCHOR + timedelta(hours=6)),
        (ANCHOR + timedelta(hours=6), ANCHOR + timedelta(hours=12)),
        (ANCHOR + timedelta(days=100, seconds=1), ANCHOR + timedelta(days=100, hours=6)),
    ],
)
def test_a_rate_fires_at_its_anchor_plus_whole_periods(after: datetime, expected: datetime) -> None:
    assert parse("rate(6 hours)", anchor=ANCHOR).next_after(after) == expected


def test_rate_days_are_24_hours_across_daylight_saving_and_ignore_the_timezone() -> None:
    anchor = datetime(2026, 3, 7, 9, 0, tzinfo=NEW_YORK)  # 09:00 EST, the day before spring forward
    rate = parse("rate(1 day)", "America/New_York", anchor=anchor)
    [second] = firings_between(rate, anchor, utc(2026, 3, 9), 5)
    assert second == utc(2026, 3, 8, 14, 0) and second.astimezone(NEW_YORK).hour == 10


def test_a_rate_needs_an_anchor_to_fire() -> None:
    rate = parse("rate(1 hour)")
    with pytest.raises(ValueError, match="no anchor"):
        rate.next_after(ANCHOR)
    assert isinstance(rate, Rate) and rate.anchored(ANCHOR).next_after(ANCHOR - timedelta(1))


AFTER = jan(1)  # a Thursday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 12 * * ? *)", [jan(1, 12), jan(2, 12)]),
        ("cron(5,35 14 * * ? *)", [jan(1, 14, 5), jan(1, 14, 35)]),
        ("cron(0/15 * * * ? *)", [jan(1, 0, 15), jan(1, 0, 30)]),
        ("cron(1/10 9 * * ? *)", [jan(1, 9, 1), jan(1, 9, 11)]),
        ("cron(*/20 3 * * ? *)", [jan(1, 3), jan(1, 3, 20)]),
        ("cron(0 8-10/2 * * ? *)", [jan(1, 8), jan(1, 10), jan(2, 8)]),
        ("cron(0 22-1 * * ? *)", [jan(1, 1), jan(1, 22), jan(1, 23), jan(2, 0)]),
        ("cron(0 8 1 * ? *)", [jan(1, 8), utc(2026, 2, 1, 8)]),
        ("cron(0 8 28-2 * ? *)", [jan(1, 8), jan(2, 8), jan(28, 8)]),
        ("cron(0 0 1/10 * ? *)", [jan(11), jan(21), jan(31)]),
        ("cron(0 0 1 JAN,JUL ? *)", [utc(2026, 7, 1), utc(2027, 1, 1)]),
        ("cron(0 0 1 nov-feb ? *)", [utc(2026, 2, 1), utc(2026, 11, 1), utc(2026, 12, 1)]),
        ("cron(0 0 1 */6 ? *)", [utc(2026, 7, 1), utc(2027, 1, 1)]),
        ("cron(0 18 ? * MON-FRI *)", [jan(1, 18), jan(2, 18), jan(5, 18)]),
        ("cron(0 9 ? * 1,7 *)", [jan(3, 9), jan(4, 9), jan(10, 9)]),
        ("cron(0 9 ? * FRI-MON *)", [jan(2, 9), jan(3, 9), jan(4, 9)]),
        ("cron(0 0 1 1 ? 2027,2030-2031)", [utc(2027, 1, 1), utc(2030, 1, 1), utc(2031, 1, 1)]),
        ("cron(0 0 1 1 ? 2026/2)", [utc(2028, 1, 1), utc(2030, 1, 1)]),
        # L in day-of-month: the month's last day, 29 February in leap years
        ("cron(0 0 L 2 ? *)", [utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)]),
        ("cron(0 0 29 2 ? *)", [utc(2028, 2, 29), utc(2032, 2, 29)]),
        ("cron(0 0 31 * ? 2026)", [jan(31), utc(2026, 3, 31), utc(2026, 5, 31)]),
        # L in day-of-week: Saturday alone, the month's last such weekday after a number
        ("cron(0 0 ? * L *)", [jan(3), jan(10)]),
        ("cron(15 10 ? * 6L 2022-2027)", [jan(30, 10, 15), utc(2026, 2, 27, 10, 15)]),
        ("cron(0 0 ? * 5L *)", [jan(29), utc(2026, 2, 26)]),
        ("cron(0 0 ? 2 1L 2026)", [utc(2026, 2, 22)]),
        # #: the n-th weekday; a fifth Thursday only in months that have one
        ("cron(0 0 ? * 3#2 *)", [jan(13), utc(2026, 2, 10)]),
        ("cron(0 0 ? * MON#1 *)", [jan(5), utc(2026, 2, 2)]),
        ("cron(0 0 ? * 5#5 2026)", [jan(29), utc(2026, 4, 30), utc(2026, 7, 30)]),
        ("cron(0 0 ? 2 1#5 *)", [utc(2032, 2, 29)]),
        # W: the nearest weekday, never outside the month
        ("cron(0 0 15W * ? 2026)", [jan(15), utc(2026, 2, 16), utc(2026, 3, 16)]),
        ("cron(0 0 3W 1 ? 2026-2027)", [jan(2), utc(2027, 1, 4)]),  # a Saturday, then a Sunday
        ("cron(0 0 1W 8 ? 2026)", [utc(2026, 8, 3)]),  # a Saturday 1st: Monday the 3rd
        ("cron(0 0 31W 5 ? 2026)", [utc(2026, 5, 29)]),  # a Sunday 31st: Friday the 29th
        ("cron(0 0 31W 1 ? 2026)", [jan(30)]),  # a Saturday 31st: Friday the 30th
        ("cron(0 0 31W 2-4 ? 2026)", [utc(2026, 3, 31)]),  # no 31st in February or April
        ("cron(0 0 30W 2 ? *)", []),
    ],
)
def test_cron_firings(expression: str, expected: list[datetime]) -> None:
    assert first(expression, AFTER, len(expected) or 1) == expected


def test_cron_firings_are_strictly_after_and_to_the_minute() -> None:
    cron = parse("cron(0 12 * * ? *)")
    assert cron.next_after(jan(1, 12)) == jan(2, 12)
    assert cron.next_after(utc(2026, 1, 1, 11, 59, 59, 999999)) == jan(1, 12)
    assert isinstance(cron, Cron) and cron.timezone == "UTC"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # spring forward, 8 March 2026: 02:00-02:59 does not exist and is skipped
        ("cron(30 2 * * ? *)", utc(2026, 3, 7, 8), [utc(2026, 3, 9, 6, 30)]),
        ("cron(0 * 8 3 ? 2026)", utc(2026, 3, 8, 5), [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)]),
        ("cron(59 1 8 3 ? 2026)", utc(2026, 3, 8), [utc(2026, 3, 8, 6, 59)]),
        ("cron(0 3 8 3 ? 2026)", utc(2026, 3, 8), [utc(2026, 3, 8, 7)]),
        # fall back, 1 November 2026: 01:00-01:59 happens twice and fires the first time only
        (
            "cron(30 1 * * ? *)",
            utc(2026, 11, 1),
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        ("cron(30 1 * * ? *)", utc(2026, 11, 1, 5, 30), [utc(2026, 11, 2, 6, 30)]),
        ("cron(0 * 1 11 ? 2026)", utc(2026, 11, 1, 4), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)]),
        ("cron(0 2 1 11 ? 2026)", utc(2026, 11, 1), [utc(2026, 11, 1, 7)]),
        # the zone's offset, not UTC's, picks the day
        ("cron(0 22 ? * FRI *)", jan(1), [jan(3, 3)]),
    ],
)
def test_cron_in_new_york_across_daylight_saving(
    expression: str, after: datetime, expected: list[datetime]
) -> None:
    assert first(expression, after, len(expected), "America/New_York") == expected


@pytest.mark.parametrize(
    ("expression", "timezone", "fires"),
    [
        ("at(2026-12-01T12:00:00)", "UTC", utc(2026, 12, 1, 12)),
        ("at(2026-12-01T07:00:00)", "America/New_York", utc(2026, 12, 1, 12)),
        ("at(2026-07-01T08:30:15)", "America/New_York", utc(2026, 7, 1, 12, 30, 15)),
        ("at(2026-03-08T02:30:00)", "America/New_York", utc(2026, 3, 8, 7, 30)),  # 03:30 EDT
        ("at(2026-11-01T01:30:00)", "America/New_York", utc(2026, 11, 1, 5, 30)),  # first 01:30
        ("at(2026-12-01T12:00:00)", "Asia/Kolkata", utc(2026, 12, 1, 6, 30)),
    ],
)
def test_at_fires_once_in_its_timezone(expression: str, timezone: str, fires: datetime) -> None:
    at = parse(expression, timezone)
    assert isinstance(at, At) and at.when == fires
    assert at.next_after(fires - timedelta(seconds=1)) == fires
    assert at.next_after(fires) is None  # an at in the past has no firing left
    assert firings_between(at, fires - timedelta(days=1), fires + timedelta(days=1), 5) == [fires]


def test_a_cron_whose_years_are_over_has_no_next_firing() -> None:
    assert parse("cron(0 0 1 1 ? 2026)").next_after(jan(1)) is None
    assert parse("cron(0 0 31 12 ? 2199)").next_after(utc(2199, 12, 31, 0, 1)) is None
    assert parse("cron(59 23 31 12 ? *)").next_after(utc(2199, 12, 31)) == utc(2199, 12, 31, 23, 59)


BOTH_SET = "day-of-month and day-of-week cannot both be set; use ? in one of them"
SIX = "expected 6 fields (minutes hours day-of-month month day-of-week year), got "


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("rate(0 minutes)", 'the value "0" is not a positive whole number'),
        ("rate(-5 minutes)", 'the value "-5" is not a positive whole number'),
        ("rate(1.5 hours)", 'the value "1.5" is not a positive whole number'),
        ("rate(1 minutes)", 'use the singular unit "minute" with the value 1'),
        ("rate(1 hours)", 'use the singular unit "hour" with the value 1'),
        ("rate(1 days)", 'use the singular unit "day" with the value 1'),
        ("rate(5 minute)", 'use the plural unit "minutes" with a value greater than 1'),
        ("rate(2 hour)", 'use the plural unit "hours" with a value greater than 1'),
        ("rate(5 weeks)", "the unit must be one of minute, minutes, hour, hours, day, days"),
        ("rate(5 Minutes)", "the unit must be one of minute, minutes, hour, hours, day, days"),
        ("rate(5)", "expected a value and a unit, as in rate(5 minutes)"),
        ("rate(5 minutes now)", "expected a value and a unit, as in rate(5 minutes)"),
        ("rate(999999999999 days)", "the value 999999999999 is too large"),
        ("at(2026-12-01 12:00:00)", "expected a date and time as yyyy-mm-ddThh:mm:ss"),
        ("at(2026-12-01T12:00)", "expected a date and time as yyyy-mm-ddThh:mm:ss"),
        ("at(2026-02-29T12:00:00)", "2026-02-29T12:00:00 is not a valid date and time"),
        ("at(2026-12-01T24:00:00)", "2026-12-01T24:00:00 is not a valid date and time"),
        ("cron(0 12 * * * *)", BOTH_SET),
        ("cron(0 12 1 * MON *)", BOTH_SET),
        ("cron(0 12 ? * ? *)", "day-of-month and day-of-week cannot both be ?; set one of them"),
        ("cron(0 12 * * ?)", SIX + "5"),
        ("cron(0 0 12 * * ? *)", SIX + "7"),
        ("cron(60 * * * ? *)", "minutes value 60 is out of range 0-59"),
        ("cron(0 24 * * ? *)", "hours value 24 is out of range 0-23"),
        ("cron(0 0 0 * ? *)", "day-of-month value 0 is out of range 1-31"),
        ("cron(0 0 32W * ? *)", "day-of-month value 32 is out of range 1-31"),
        ("cron(0 0 1 13 ? *)", "month value 13 is out of range 1-12"),
        ("cron(0 0 ? * 0 *)", "day-of-week value 0 is out of range 1-7"),
        ("cron(0 0 ? * 8L *)", "day-of-week value 8 is out of range 1-7"),
        ("cron(0 0 1 1 ? 1969)", "year value 1969 is out of range 1970-2199"),
        ("cron(0 0 1 1 ? 2200)", "year value 2200 is out of range 1970-2199"),
        ("cron(0 0 1 1 ? 2030-2026)", "the year range 2030-2026 runs backwards"),
        ("cron(0 0 1 January ? *)", '"January" is not a valid month value'),
        ("cron(0 0 ? * SUNDAY *)", '"SUNDAY" is not a valid day-of-week value'),
        ("cron(0 0 1 MON ? *)", '"MON" is not a valid month value'),
        ("cron(x 0 1 * ? *)", '"x" is not a valid minutes value'),
        ("cron(1,,2 0 1 * ? *)", '"" is not a valid minutes value'),
        ("cron(0 ? 1 * ? *)", "? is allowed only in the day-of-month and day-of-week fields"),
        ("cron(0/0 * * * ? *)", '"0/0": the increment after / must be a positive whole number'),
        ("cron(0/x * * * ? *)", '"0/x": the increment after / must be a positive whole number'),
        ("cron(0 0 ? * 1/2 *)", "the / wildcard is not allowed in day-of-week"),
        (
            "cron(0 0 ? * 3#1,6#3 *)",
            '"3#1,6#3": a # expression must be the only one in day-of-week',
        ),
        ("cron(0 0 ? * 3#6 *)", '"3#6": the instance after # must be 1-5'),
        ("cron(0 0 ? * 3#0 *)", '"3#0": the instance after # must be 1-5'),
        ("cron(0 0 ? * 1-3L *)", "L must stand alone in day-of-week, as in L or 6L"),
        ("cron(0 0 ? * L,2 *)", "L must stand alone in day-of-week, as in L or 6L"),
        ("cron(0 0 LW * ? *)", "W must follow a single day of the month, as in 15W"),
        ("cron(0 0 1-5W * ? *)", "W must follow a single day of the month, as in 15W"),
        ("cron(0 0 L-3 * ? *)", "L and W must stand alone in day-of-month, as in L or 15W"),
        ("cron(0 0 1,L * ? *)", "L and W must stand alone in day-of-month, as in L or 15W"),
        ("cron(0 L * * ? *)", '"L" is not a valid hours value'),
    ],
)
def test_refused_expressions_say_why(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse(expression, "America/New_York")
    kind = expression.partition("(")[0]
    assert str(refused.value) == f'invalid {kind} expression "{expression}": {reason}'
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    "expression", ["every 5 minutes", "0 12 * * ? *", " rate(5 minutes)", "RATE(5 minutes)"]
)
def test_an_expression_of_no_known_type_is_refused(expression: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse(expression)
    assert str(refused.value) == (
        f'invalid schedule expression "{expression}": use at(yyyy-mm-ddThh:mm:ss), '
        "rate(value unit) or cron(minutes hours day-of-month month day-of-week year)"
    )


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "America", "../etc/passwd", "", "utc", "localtime"]
)
def test_an_unknown_timezone_is_refused(timezone: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse("rate(5 minutes)", timezone)
    assert str(refused.value) == (
        f'invalid timezone "{timezone}": use an IANA time zone name such as America/New_York'
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("cron(0 12 * * ? *)").next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("rate(1 hour)", anchor=datetime(2026, 1, 1))
