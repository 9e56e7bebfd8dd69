"""Aliases and provisioned concurrency, pure: what each alias may route to and what each
version must keep warm.

Lambda's rules: an alias points to one version and at most one more with a weight; provisioned
concurrency lives on a published version or an alias, is split across a weighted alias's
versions by weight, and counts against the function's reserved concurrency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.routes import LATEST
from klambda.api.types import AliasSpec, VersionSpec

VERSION_NOT_FOUND = Reason.VERSION_NOT_FOUND
FUNCTION_NOT_FOUND = Reason.FUNCTION_NOT_FOUND
DUPLICATE_ALIAS = Reason.DUPLICATE_ALIAS
PROVISIONED_EXCEEDS_RESERVED = Reason.PROVISIONED_EXCEEDS_RESERVED
PROVISIONED_EXCEEDS_LIMIT = Reason.PROVISIONED_EXCEEDS_LIMIT


def alias_name(obj: ApiObject) -> str:
    spec: AliasSpec = obj.spec
    return spec.name or obj.name


@dataclass(frozen=True)
class AliasPlan:
    """One alias as it can be honoured now."""

    obj: ApiObject
    name: str
    primary: str
    weights: dict[str, float]
    provisioned: dict[str, int]
    """Provisioned environments this alias asks of each version."""
    problem: tuple[Reason, str] | None = None
    """(Reason, message) when the alias cannot route."""

    @property
    def versions(self) -> list[str]:
        return [self.primary, *self.weights]


def split_provisioned(total: int, primary: str, weights: Mapping[str, float]) -> dict[str, int]:
    """Provisioned environments per version of a (weighted) alias; they add up to ``total``."""
    out: dict[str, int] = {}
    rest = total
    for version, weight in weights.items():
        share = round(total * weight)
        out[version] = share
        rest -= share
    out[primary] = rest
    return {v: n for v, n in out.items() if n > 0}


@dataclass
class FunctionPlan:
    """Aliases and provisioned concurrency of one function."""

    aliases: list[AliasPlan] = field(default_factory=list)
    provisioned: dict[str, int] = field(default_factory=dict)
    """Total provisioned environments per version."""
    problem: tuple[Reason, str] | None = None


def plan_function(
    function_exists: bool,
    versions: Mapping[str, ApiObject],
    aliases: Iterable[ApiObject],
    reserved: int | None,
    per_version_limit: int | None = None,
) -> FunctionPlan:
    """``versions``: numbered Version objects by number (the first object of each number)."""
    out = FunctionPlan()
    seen: set[str] = set()
    for obj in sorted(aliases, key=lambda o: o.creation_key):
        spec: AliasSpec = obj.spec
        name = alias_name(obj)
        weights = spec.weights
        plan = AliasPlan(
            obj,
            name,
            spec.function_version,
            weights,
            split_provisioned(spec.provisioned_concurrency, spec.function_version, weights),
        )
        problem = None
        if not function_exists:
            problem = (FUNCTION_NOT_FOUND, f'Function "{spec.function_name}" not found')
        elif name in seen:
            problem = (DUPLICATE_ALIAS, f'another Alias already names "{name}" for this function')
        else:
            missing = [v for v in plan.versions if v != LATEST and v not in versions]
            if missing:
                problem = (VERSION_NOT_FOUND, f"version {', '.join(missing)} does not exist")
        seen.add(name)
        if problem is not None:
            plan = AliasPlan(obj, name, plan.primary, weights, {}, problem)
        out.aliases.append(plan)
    totals: dict[str, int] = defaultdict(int)
    for plan in out.aliases:
        for version, n in plan.provisioned.items():
            totals[version] += n
    for number, obj in versions.items():
        vspec: VersionSpec = obj.spec
        totals[number] += vspec.provisioned_concurrency
    requested = sum(totals.values())
    if reserved is not None and requested > reserved:
        out.problem = (
            PROVISIONED_EXCEEDS_RESERVED,
            f"provisioned concurrency ({requested}) exceeds the function's reserved "
            f"concurrency ({reserved})",
        )
        return out
    over = sorted(v for v, n in totals.items() if per_version_limit and n > per_version_limit)
    if over:
        out.problem = (
            PROVISIONED_EXCEEDS_LIMIT,
            f"provisioned concurrency for version {over[0]} ({totals[over[0]]}) exceeds the "
            f"platform's {per_version_limit} environments per version",
        )
        return out
    out.provisioned = {v: n for v, n in totals.items() if n > 0}
    return out


def honoured_reservations(
    reservations: Mapping[tuple[str, str], int | None],
    order: Iterable[tuple[str, str]],
    regional_limit: int,
    unreserved_minimum: int = 100,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], str]]:
    """Reservations that fit (in ``order``, oldest first), and why the others do not.

    Lambda refuses a reservation that would leave less than ``unreserved_minimum`` of the
    regional limit to functions without one.
    """
    budget = regional_limit - unreserved_minimum
    granted: dict[tuple[str, str], int] = {}
    refused: dict[tuple[str, str], str] = {}
    for key in order:
        wanted = reservations.get(key)
        if wanted is None:
            continue
        if wanted <= budget:
            granted[key] = wanted
            budget -= wanted
        else:
            refused[key] = (
                f"reservedConcurrency {wanted} would leave less than {unreserved_minimum} of the "
                f"regional limit ({regional_limit}) unreserved; {budget} can still be reserved"
            )
    return granted, refused


class Reservations:
    """Reserved concurrency granted across functions, kept current one function at a time:
    a reconcile of one function records its own reservation here instead of reading every
    other function. Cost per change: the functions that have a reservation."""

    def __init__(self, regional_limit: int) -> None:
        self.regional_limit = regional_limit
        self._wanted: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
        self.granted: dict[tuple[str, str], int] = {}
        self.refused: dict[tuple[str, str], str] = {}

    def update(
        self, key: tuple[str, str], order: tuple[str, str], wanted: int | None
    ) -> set[tuple[str, str]]:
        """Records ``key``'s reservation (``wanted`` None: none, or the function is gone;
        ``order``: its creation key, oldest first wins) and returns every function whose grant
        or refusal changed, ``key`` included."""
        new = None if wanted is None else (order, wanted)
        if self._wanted.get(key) == new:
            return set()
        if new is None:
            self._wanted.pop(key, None)
        else:
            self._wanted[key] = new
        granted, refused = honoured_reservations(
            {k: w for k, (_, w) in self._wanted.items()},
            sorted(self._wanted, key=lambda k: self._wanted[k][0]),
            self.regional_limit,
        )
        touched = set(granted) | set(refused) | set(self.granted) | set(self.refused)
        changed = {
            k
            for k in touched
            if (granted.get(k), refused.get(k)) != (self.granted.get(k), self.refused.get(k))
        }
        self.granted, self.refused = granted, refused
        return changed | {key}
