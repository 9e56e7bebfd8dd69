"""Which version runs an invocation: Lambda's qualifier rules and alias weights (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from klambda.api.routes import LATEST, FunctionRoute


class UnknownQualifier(LookupError):
    """No version or alias of the function has this name."""


@dataclass(frozen=True)
class Selection:
    version: str
    """The version that runs (X-Amz-Executed-Version)."""
    alias: str | None = None
    """The alias the caller named, if any."""


def pick(primary: str, weights: Mapping[str, float], draw: float) -> str:
    """The version for a uniform ``draw`` in [0, 1): each weighted version takes its share."""
    for version, weight in weights.items():
        if draw < weight:
            return version
        draw -= weight
    return primary


def select(route: FunctionRoute, qualifier: str | None, draw: float) -> Selection:
    if qualifier is None or qualifier == LATEST:
        return Selection(LATEST)
    if qualifier.isdigit():
        if qualifier not in route.versions:
            raise UnknownQualifier(qualifier)
        return Selection(qualifier)
    alias = route.aliases.get(qualifier)
    if alias is None:
        raise UnknownQualifier(qualifier)
    return Selection(pick(alias.primary, alias.weights, draw), qualifier)
