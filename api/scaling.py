"""How many environments a version runs: provisioned concurrency plus demand (pure).

Exactly one component decides, and this is its rule (the knative split: the gateway reports
demand, the autoscaler decides). Gateways report, per version, how many environments their
invocations want and when they last invoked it; the controller (locally) or the operator (on
Kubernetes: a Deployment's replicas) applies ``desired_replicas``. On Kubernetes each gateway
replica writes only its own report, an annotation of the version's Deployment named after the
gateway, so reports never overwrite each other, and only the operator writes ``replicas``,
with the resourceVersion it read (a 409 means read again and decide again).

Keep-warm is part of the rule: while a version was invoked within the keep-warm period it keeps
at least what it has (and grows to what is wanted); once idle it goes back to its provisioned
concurrency (zero without any).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEMAND_ANNOTATION_PREFIX = "demand.klambda.io/"
"""Annotation keys of demand reports: the prefix and the reporting gateway's name."""
REPORT_TTL = 120.0
"""Seconds after which a report no longer counts (its gateway is gone or cut off). Gateways
refresh their reports well within it while they use a version."""


@dataclass(frozen=True)
class Demand:
    """One gateway's report for one version."""

    wanted: int
    """Environments its invocations want now: 1 to start from zero, one more than it can use
    when every one is busy, else what it holds."""
    last_used: float
    """When it last invoked the version (epoch seconds)."""
    reported: float
    """When it made the report (epoch seconds)."""

    def encode(self) -> str:
        return json.dumps(
            {"wanted": self.wanted, "lastUsed": self.last_used, "reported": self.reported}
        )

    @classmethod
    def decode(cls, text: str) -> Demand | None:
        """The report in an annotation's value, or None if it is not one."""
        try:
            raw = json.loads(text)
            return cls(int(raw["wanted"]), float(raw["lastUsed"]), float(raw["reported"]))
        except (ValueError, KeyError, TypeError):
            return None


def demands_of(annotations: Mapping[str, str]) -> list[Demand]:
    """Every gateway's report among a Deployment's annotations."""
    found = (
        Demand.decode(value)
        for key, value in annotations.items()
        if key.startswith(DEMAND_ANNOTATION_PREFIX)
    )
    return [d for d in found if d is not None]


def in_use(demands: Iterable[Demand], now: float, keep_warm: float) -> bool:
    """Some live report says the version was invoked within the keep-warm period."""
    return any(now - d.last_used < keep_warm for d in live(demands, now))


def desired_replicas(
    provisioned: int, current: int, demands: Iterable[Demand], now: float, keep_warm: float
) -> int:
    """Environments (pods) the version should run.

    ``current``: what it runs now. In use: the most any gateway wants, never less than what it
    has nor than ``provisioned`` (scaling down waits for the keep-warm period to pass). Idle:
    ``provisioned``.
    """
    counted = live(demands, now)
    if not any(now - d.last_used < keep_warm for d in counted):
        return provisioned
    return max(provisioned, current, max((d.wanted for d in counted), default=0))


def next_change(demands: Iterable[Demand], now: float, keep_warm: float) -> float | None:
    """Seconds until ``desired_replicas`` may answer differently by the clock alone (a
    keep-warm period or a report running out), or None when no report counts any more."""
    ends = [
        end
        for d in live(demands, now)
        for end in (d.last_used + keep_warm, d.reported + REPORT_TTL)
        if end > now
    ]
    return min(ends) - now + 0.01 if ends else None


def live(demands: Iterable[Demand], now: float) -> list[Demand]:
    """The reports that still count (made within REPORT_TTL)."""
    return [d for d in demands if now - d.reported <= REPORT_TTL]
