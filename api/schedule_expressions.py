"""EventBridge Scheduler schedule expressions: parsing and firing times (pure).

A ``Schedule`` fires an asynchronous invocation on ``scheduleExpression`` read in ``timezone``,
spread by ``flexibleTimeWindow``. Every replica must agree on when, and on what happens to the
firings missed while the platform was down, so it is all decided here from the expression and
the clock the caller passes in; nothing is read but zone data (through :mod:`zoneinfo`).

The rules are those of "Schedule types in EventBridge Scheduler"
(https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html) and of the cron
and rate reference it shares with EventBridge rules
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html):

- cron: six fields; ``, - * /`` in each but day-of-week, which takes ``, - * ? L #``, while
  day-of-month adds ``? L W``; exactly one day field is ``?``; a ``#`` stands alone ("3#1,6#3"
  is not valid). Ranges may wrap, as the reference's ``20-2`` hours example does (not years).
  ``L``, ``nL`` and ``nW`` stand alone; the undocumented ``LW`` and ``L-n`` are refused. ``nW``
  never leaves the month and, like a plain day n, names nothing in a month without day n.
- rate: with 1 the unit is singular, otherwise plural ("rate(1 hours) and rate(5 hour) aren't
  valid"). Without a StartDate "your schedule starts invoking the target immediately", so the
  anchor is itself the first firing. ``days`` are 24 hours, whatever daylight saving does.
- Daylight saving: "if a cron expression falls on a non-existent date and time, your schedule
  invocation is skipped"; in a repeated hour "your schedule runs only once" (the first time).
  The guide is silent on ``at``: see :func:`_at`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIN_YEAR, MAX_YEAR = 1970, 2199
DEFAULT_MAXIMUM_EVENT_AGE = 86400
"""RetryPolicy.MaximumEventAgeInSeconds: 60-86400, 24 hours unless set."""
SKIP_COUNT_CAP = 10_000
"""Skipped firings are counted up to this: a week's outage of a per-minute cron stays cheap."""


class ScheduleError(ValueError):
    """An expression or setting EventBridge Scheduler would refuse; the message is the sentence
    to show the user, naming the expression and what is wrong with it."""


def _utc(t: datetime, name: str) -> datetime:
    """Naive datetimes are refused: which instant they mean depends on the machine's zone."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


@dataclass(frozen=True)
class Expression:
    """A parsed schedule expression; ``expression`` is the text it came from."""

    expression: str

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        """Firing times strictly after ``t``, in order, in UTC."""
        raise NotImplementedError

    def next_after(self, t: datetime) -> datetime | None:
        """The first firing strictly after ``t`` (UTC), or None when there is none left."""
        return next(self.iter_after(t), None)


@dataclass(frozen=True)
class Rate(Expression):
    """Fires at ``anchor + k * period`` for k >= 0. The anchor is the schedule's StartDate or,
    without one, its creation time (look from just before it to see that first firing); an
    unanchored rate can be validated but not run."""

    period: timedelta
    anchor: datetime | None = None

    def anchored(self, anchor: datetime) -> Rate:
        return replace(self, anchor=_utc(anchor, "anchor"))

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        if self.anchor is None:
            raise ValueError(f"{self.expression} has no anchor: parse it with anchor=")
        t, anchor = _utc(t, "t"), self.anchor
        k = 0 if t < anchor else (t - anchor) // self.period + 1
        try:
            while True:
                yield anchor + k * self.period
                k += 1
        except OverflowError:  # past year 9999
            return


@dataclass(frozen=True)
class At(Expression):
    """A one-time schedule: ``local`` is the wall time named, ``when`` the instant it fires."""

    timezone: str
    local: datetime
    when: datetime

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        if self.when > _utc(t, "t"):
            yield self.when


@dataclass(frozen=True)
class DayRule:
    """The days of a month that the day field which is not ``?`` names. ``values`` are days of
    the month, or weekdays 1 (SUN) to 7 (SAT); ``last`` is ``L`` (day-of-month) or ``nL``, the
    month's last weekday n; ``nearest_weekday`` is ``nW``; ``nth`` is k in ``n#k``."""

    field: str
    values: frozenset[int] = frozenset()
    last: bool = False
    nearest_weekday: bool = False
    nth: int = 0

    def days(self, year: int, month: int) -> list[int]:
        first, length = calendar.monthrange(year, month)
        weekday = [0, *((first + day) % 7 + 1 for day in range(1, length + 1))]  # cron's 1-7
        if self.field == "day-of-month" and self.last:
            return [length]
        if self.field == "day-of-month":
            plain = sorted(day for day in self.values if day <= length)
            return _nearest(plain, length, weekday) if self.nearest_weekday else plain
        if self.last:
            (wanted,) = self.values
            return [length - (weekday[length] - wanted) % 7]
        if self.nth:
            (wanted,) = self.values
            day = 1 + (wanted - weekday[1]) % 7 + 7 * (self.nth - 1)
            return [day] if day <= length else []
        return [day for day in range(1, length + 1) if weekday[day] in self.values]


def _nearest(days: list[int], length: int, weekday: list[int]) -> list[int]:
    """``nW``: Saturday moves to the Friday before and Sunday to the Monday after, unless that
    leaves the month (a Saturday 1st moves to Monday the 3rd, a Sunday 31st to Friday the 29th)."""
    if not days:
        return []
    (day,) = days
    if weekday[day] == 7:
        return [day - 1 if day > 1 else day + 2]
    if weekday[day] == 1:
        return [day + 1 if day < length else day - 2]
    return [day]


@dataclass(frozen=True)
class Cron(Expression):
    """Fires at each wall time its fields name, read in ``timezone``; a wall time that daylight
    saving skips is skipped, and a repeated one fires at its first instance only."""

    timezone: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...]
    day_rule: DayRule

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Named wall times from ``start`` (naive, local) on, month by month, so a sparse
        expression (29 February, one year) skips straight past the months it does not name."""
        for year in self.years:
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                for day in self.day_rule.days(year, month):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    for hour in self.hours:
                        for minute in self.minutes:
                            wall = datetime(year, month, day, hour, minute)
                            if wall >= start:
                                yield wall

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        t = _utc(t, "t")
        zone = ZoneInfo(self.timezone)
        start = t.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        for wall in self._walls(start):
            fired = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: a repeated hour's first
            if fired.astimezone(zone).replace(tzinfo=None) != wall:
                continue  # the zone skips this wall time that day (spring forward)
            if fired > t:
                yield fired


_FORM = re.compile(r"(at|rate|cron)\((.*)\)", re.DOTALL)
_AT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", re.ASCII)
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTHS = {
    name: n
    for n, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_WEEKDAYS = {name: n for n, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
_Field = tuple[str, int, int, dict[str, int]]
_MINUTES: _Field = ("minutes", 0, 59, {})
_HOURS: _Field = ("hours", 0, 23, {})
_DAY_OF_MONTH: _Field = ("day-of-month", 1, 31, {})
_MONTH: _Field = ("month", 1, 12, _MONTHS)
_DAY_OF_WEEK: _Field = ("day-of-week", 1, 7, _WEEKDAYS)
_YEAR: _Field = ("year", MIN_YEAR, MAX_YEAR, {})
_NOT_IANA = {"localtime", "posixrules"}  # in some zone databases, but machine-dependent


class _Bad(Exception):
    """Why an expression is refused; parse() names the expression around it."""


def parse(expression: str, timezone: str = "UTC", *, anchor: datetime | None = None) -> Expression:
    """An ``at``, ``rate`` or ``cron`` expression, exactly as EventBridge Scheduler takes it.
    ``timezone`` (an IANA name) is where cron and at are read; rate ignores it, but it is still
    checked, as ScheduleExpressionTimezone is. ``anchor`` starts a rate (see :class:`Rate`)."""
    zone = _zone(timezone)
    match = _FORM.fullmatch(expression)
    if match is None:
        raise ScheduleError(
            f'invalid schedule expression "{expression}": use at(yyyy-mm-ddThh:mm:ss), '
            "rate(value unit) or cron(minutes hours day-of-month month day-of-week year)"
        )
    kind, body = match.groups()
    try:
        if kind == "rate":
            rate = _rate(expression, body)
            return rate if anchor is None else rate.anchored(anchor)
        if kind == "at":
            return _at(expression, body, timezone, zone)
        return _cron(expression, body, timezone)
    except _Bad as bad:
        raise ScheduleError(f'invalid {kind} expression "{expression}": {bad}') from None


def _zone(timezone: str) -> ZoneInfo:
    try:
        if timezone in _NOT_IANA:
            raise ZoneInfoNotFoundError(timezone)
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f'invalid timezone "{timezone}": use an IANA time zone name such as America/New_York'
        ) from None


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _rate(expression: str, body: str) -> Rate:
    match = re.fullmatch(r"(\S+) +(\S+)", body)
    if match is None:
        raise _Bad("expected a value and a unit, as in rate(5 minutes)")
    text, unit = match.groups()
    value = _number(text)
    if value is None or value < 1:
        raise _Bad(f'the value "{text}" is not a positive whole number')
    if unit not in _UNITS:
        raise _Bad("the unit must be one of " + ", ".join(_UNITS))
    if value == 1 and unit.endswith("s"):
        raise _Bad(f'use the singular unit "{unit[:-1]}" with the value 1')
    if value > 1 and not unit.endswith("s"):
        raise _Bad(f'use the plural unit "{unit}s" with a value greater than 1')
    try:
        return Rate(expression, timedelta(seconds=value * _UNITS[unit]))
    except OverflowError:
        raise _Bad(f"the value {value} is too large") from None


def _at(expression: str, body: str, timezone: str, zone: ZoneInfo) -> At:
    """A wall time the zone skips is read with the offset in force before the gap, so it moves
    later by the gap's length (02:30 on a spring-forward night fires at 03:30), as java.time
    does: a one-time schedule that never fired would be lost. A repeated one fires the first
    time, as cron does."""
    match = _AT.fullmatch(body)
    if match is None:
        raise _Bad("expected a date and time as yyyy-mm-ddThh:mm:ss")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise _Bad(f"{body} is not a valid date and time") from None
    return At(expression, timezone, local, local.replace(tzinfo=zone).astimezone(UTC))


def _cron(expression: str, body: str, timezone: str) -> Cron:
    texts = body.split()
    if len(texts) != 6:
        raise _Bad(
            "expected 6 fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(texts)}"
        )
    minutes, hours, dom, month, dow, year = texts
    if "?" in minutes + hours + month + year:
        raise _Bad("? is allowed only in the day-of-month and day-of-week fields")
    by_month, by_week = _day_of_month(dom), _day_of_week(dow)
    if by_month is None and by_week is None:
        raise _Bad("day-of-month and day-of-week cannot both be ?; set one of them")
    if by_month is not None and by_week is not None:
        raise _Bad("day-of-month and day-of-week cannot both be set; use ? in one of them")
    return Cron(
        expression,
        timezone,
        minutes=tuple(sorted(_values(minutes, _MINUTES))),
        hours=tuple(sorted(_values(hours, _HOURS))),
        months=tuple(sorted(_values(month, _MONTH))),
        years=tuple(sorted(_values(year, _YEAR))),
        day_rule=by_month or by_week or DayRule("day-of-month"),
    )


def _day_of_month(text: str) -> DayRule | None:
    text = text.upper()
    if text == "?":
        return None
    if text == "L":
        return DayRule("day-of-month", last=True)
    if text.endswith("W"):
        if _number(text[:-1]) is None:
            raise _Bad("W must follow a single day of the month, as in 15W")
        day = _value(text[:-1], _DAY_OF_MONTH)
        return DayRule("day-of-month", frozenset({day}), nearest_weekday=True)
    if "L" in text or "W" in text:
        raise _Bad("L and W must stand alone in day-of-month, as in L or 15W")
    return DayRule("day-of-month", _values(text, _DAY_OF_MONTH))


def _day_of_week(text: str) -> DayRule | None:
    text = text.upper()
    if text == "?":
        return None
    if text == "L":  # the last day of the week
        return DayRule("day-of-week", frozenset({7}))
    if "#" in text:
        if "," in text:
            raise _Bad(f'"{text}": a # expression must be the only one in day-of-week')
        weekday, _, nth = text.partition("#")
        if nth not in ("1", "2", "3", "4", "5"):
            raise _Bad(f'"{text}": the instance after # must be 1-5')
        return DayRule("day-of-week", frozenset({_value(weekday, _DAY_OF_WEEK)}), nth=int(nth))
    if "L" in text:
        if not text.endswith("L") or any(mark in text for mark in ",-/*"):
            raise _Bad("L must stand alone in day-of-week, as in L or 6L")
        return DayRule("day-of-week", frozenset({_value(text[:-1], _DAY_OF_WEEK)}), last=True)
    return DayRule("day-of-week", _values(text, _DAY_OF_WEEK))


def _values(text: str, field: _Field) -> frozenset[int]:
    """A list of values, ranges and increments, as the set of values it names."""
    name, low, high, _ = field
    named: set[int] = set()
    for item in text.split(","):
        base, slash, increment = item.partition("/")
        step = _number(increment) if slash else 1
        if slash and name == "day-of-week":
            raise _Bad("the / wildcard is not allowed in day-of-week")
        if step is None or step < 1:
            raise _Bad(f'"{item}": the increment after / must be a positive whole number')
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, field), _value(last, field)
        else:
            start = _value(base, field)
            end = high if slash else start
        if start <= end:
            named.update(range(start, end + 1, step))
        elif name == "year":
            raise _Bad(f"the year range {base} runs backwards")
        else:  # a range that wraps, as hours 20-2 does
            named.update([*range(start, high + 1), *range(low, end + 1)][::step])
    return frozenset(named)


def _value(text: str, field: _Field) -> int:
    name, low, high, names = field
    number = names.get(text.upper(), _number(text))
    if number is None:
        raise _Bad(f'"{text}" is not a valid {name} value')
    if not low <= number <= high:
        raise _Bad(f"{name} value {number} is out of range {low}-{high}")
    return number
