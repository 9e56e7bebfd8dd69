"""The one rule that sizes a version: provisioned concurrency plus the gateways' demand."""

from __future__ import annotations

import pytest

from klambda.api.scaling import (
    DEMAND_ANNOTATION_PREFIX,
    REPORT_TTL,
    Demand,
    demands_of,
    desired_replicas,
    in_use,
    next_change,
)

NOW = 10_000.0
KEEP_WARM = 300.0


def d(wanted: int, used_ago: float, reported_ago: float = 0.0) -> Demand:
    return Demand(wanted, NOW - used_ago, NOW - reported_ago)


@pytest.mark.parametrize(
    ("provisioned", "current", "demands", "expected", "why"),
    [
        (0, 0, [], 0, "never used, nothing provisioned: zero"),
        (2, 0, [], 2, "provisioned is the floor"),
        (0, 0, [d(1, 0)], 1, "an activation starts one"),
        (0, 2, [d(3, 1)], 3, "saturated: one more than it has"),
        (0, 5, [d(0, 10)], 5, "in use: never shrinks before keep-warm passes"),
        (1, 5, [d(0, KEEP_WARM + 1)], 1, "idle past keep-warm: back to provisioned"),
        (0, 3, [d(2, 1), d(4, 2)], 4, "several gateways: the most any wants"),
        (3, 1, [d(2, 1)], 3, "provisioned above demand wins"),
        (0, 4, [d(6, 1, reported_ago=REPORT_TTL + 1)], 0, "a dead gateway's report is ignored"),
    ],
)
def test_desired_replicas(
    provisioned: int, current: int, demands: list[Demand], expected: int, why: str
) -> None:
    assert desired_replicas(provisioned, current, demands, NOW, KEEP_WARM) == expected, why


def test_in_use() -> None:
    assert in_use([d(0, 10)], NOW, KEEP_WARM)
    assert not in_use([d(0, KEEP_WARM)], NOW, KEEP_WARM)
    assert not in_use([], NOW, KEEP_WARM)


def test_reports_round_trip_through_annotations() -> None:
    report = d(2, 5)
    annotations = {
        DEMAND_ANNOTATION_PREFIX + "gw-1": report.encode(),
        DEMAND_ANNOTATION_PREFIX + "gw-2": "not json",  # ignored, not fatal
        "klambda.io/provisioned": "1",
    }
    assert demands_of(annotations) == [report]


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([], None),  # nothing counts: nothing changes by the clock
        ([Demand(2, 1000.0 - 250, 1000.0)], 50.01),  # keep-warm ends first
        ([Demand(2, 1000.0, 1000.0 - 100)], 20.01),  # the report stops counting first
        ([Demand(2, 1000.0 - 400, 1000.0)], 120.01),  # idle already: the report's TTL is left
        ([Demand(1, 0.0, 0.0)], None),  # a dead report
    ],
)
def test_next_change_is_the_earliest_clock_boundary(
    reports: list[Demand], expected: float | None
) -> None:
    result = next_change(reports, 1000.0, 300.0)
    assert result == (pytest.approx(expected) if expected is not None else None)
