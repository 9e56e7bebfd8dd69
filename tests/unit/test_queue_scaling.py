"""Lambda's SQS scaling rule as tables: start with five batches, add up to 300 a minute while
messages wait, never past maximumConcurrency nor the function's reserved concurrency, back to
five once idle for a while."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klambda.gateway.queue_scaling import (
    ADDED_PER_MINUTE,
    IDLE_SECONDS,
    Observed,
    Scale,
    cap_of,
    step,
)


@pytest.mark.parametrize(
    ("maximum", "reserved", "cap"),
    [
        (None, None, 1000),  # Lambda's most batches per mapping
        (50, None, 50),
        (None, 20, 20),  # a batch is an invocation: the reservation bounds it
        (50, 20, 20),
        (10, 0, 0),  # reserved 0: the function is off, nothing is polled
    ],
)
def test_the_cap(maximum: int | None, reserved: int | None, cap: int) -> None:
    assert cap_of(maximum, reserved) == cap


def seen(backlog: int, busy: int = 0, now: float = 0.0, elapsed: float = 1.0) -> Observed:
    return Observed(backlog=backlog, busy=busy, now=now, elapsed=elapsed)


@pytest.mark.parametrize(
    ("before", "observed", "cap", "target"),
    [
        (Scale(), seen(0), 1000, 5),  # starts at five
        (Scale(), seen(0), 3, 3),  # ... or the cap, when lower
        (Scale(), seen(100), 1000, 10),  # 300 a minute is 5 a second
        (Scale(), seen(1000, elapsed=60), 1000, 305),  # a minute's worth at once
        (Scale(), seen(2), 1000, 7),  # no more than the waiting batches
        (Scale(998), seen(100), 1000, 1000),  # never past the cap
        (Scale(40), seen(100), 20, 20),  # a cap lowered meanwhile applies at once
        (Scale(0), seen(0), 1000, 5),  # never below the start
    ],
)
def test_scaling_up(before: Scale, observed: Observed, cap: int, target: int) -> None:
    assert step(before, observed, cap).target == target


def test_fractions_of_an_addition_add_up_over_short_ticks() -> None:
    scale = Scale()
    for _ in range(5):  # five ticks of 0.1 s: 0.5 s, so 2.5 additions
        scale = step(scale, seen(100, elapsed=0.1), 1000)
    assert scale.target == 7


def test_idle_scales_down_to_what_is_busy_only_after_the_idle_period() -> None:
    scale = Scale(200)
    scale = step(scale, seen(0, busy=30, now=100.0), 1000)
    assert scale.target == 200  # idle just now: keep the pollers
    scale = step(scale, seen(0, busy=30, now=100.0 + IDLE_SECONDS - 1), 1000)
    assert scale.target == 200
    scale = step(scale, seen(0, busy=30, now=100.0 + IDLE_SECONDS), 1000)
    assert scale.target == 30  # down to the busy batches
    scale = step(scale, seen(0, busy=0, now=200.0 + IDLE_SECONDS), 1000)
    assert scale.target == 5  # and to the start, never below


def test_a_backlog_restarts_the_idle_period() -> None:
    scale = step(Scale(100), seen(0, now=0.0), 1000)
    scale = step(scale, seen(3, now=IDLE_SECONDS - 1), 1000)
    scale = step(scale, seen(0, now=IDLE_SECONDS + 1), 1000)
    assert scale.target >= 100 and scale.idle_since == IDLE_SECONDS + 1


@given(
    ticks=st.lists(
        st.tuples(st.integers(0, 500), st.integers(0, 500), st.floats(0.0, 5.0)), max_size=60
    ),
    cap=st.integers(0, 1000),
)
def test_the_target_stays_in_bounds_and_grows_no_faster_than_lambda(
    ticks: list[tuple[int, int, float]], cap: int
) -> None:
    scale, now = Scale(), 0.0
    for backlog, busy, elapsed in ticks:
        now += elapsed
        before = min(cap, max(min(5, cap), scale.target))
        scale = step(scale, Observed(backlog, busy, now, elapsed), cap)
        assert min(5, cap) <= scale.target <= cap
        assert scale.target - before <= ADDED_PER_MINUTE * elapsed / 60 + ADDED_PER_MINUTE / 60
