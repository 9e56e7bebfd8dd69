"""Publishing, alias planning, reservations, version selection and the concurrency limiter."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from klambda.api.aliases import honoured_reservations, plan_function, split_provisioned
from klambda.api.objects import ApiObject, parse_object
from klambda.api.publishing import Snapshot, assign
from klambda.api.routes import AliasRoute, FunctionRoute, VersionTarget
from klambda.api.schema import ValidationError
from klambda.gateway.concurrency import ConcurrencyLimiter
from klambda.gateway.errors import TooManyRequests
from klambda.gateway.selection import UnknownQualifier, pick, select

_seq = iter(range(10**6))


def obj(
    kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None
) -> ApiObject:
    o = parse_object(
        {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    o.manifest["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{next(_seq):02d}Z"
    o.status = copy.deepcopy(status or {})
    return o


def version(name: str, number: str | None = None, **spec: Any) -> ApiObject:
    status = {"version": number, "configHash": "h", "codeSha256": "c"} if number else {}
    return obj("Version", name, {"functionName": "fn", **spec}, status)


def alias(name: str, to: str, weights: dict[str, float] | None = None, pc: int = 0) -> ApiObject:
    spec: dict[str, Any] = {
        "functionName": "fn",
        "functionVersion": to,
        "provisionedConcurrency": pc,
    }
    if weights:
        spec["routingConfig"] = {"additionalVersionWeights": weights}
    return obj("Alias", name, spec)


SNAP = Snapshot({"runtime": "python3.11"}, "c2", "h2")


def test_versions_are_numbered_in_order_and_never_reused() -> None:
    out, last = assign(
        [version("a"), version("b")], last_version=4, current=SNAP, function_exists=True
    )
    assert [(a.version, a.reason) for a in out] == [("5", "Published"), ("5", "Unchanged")]
    assert last == 5


def test_unchanged_function_names_the_latest_version() -> None:
    out, last = assign([version("old", "3"), version("new")], 3, Snapshot({}, "c", "h"), True)
    assert (out[0].version, out[0].reason, last) == ("3", "Unchanged", 3)


def test_publishing_waits_for_code_and_checks_preconditions() -> None:
    waiting, _ = assign([version("a")], 0, None, True)
    assert (waiting[0].version, waiting[0].reason) == (None, "FunctionNotReady")
    bad, last = assign([version("a", codeSha256="other")], 0, SNAP, True)
    assert (bad[0].version, bad[0].reason, last) == (None, "PreconditionFailed", 0)
    missing, _ = assign([version("a")], 0, SNAP, False)
    assert missing[0].reason == "FunctionNotFound"


def test_version_spec_rules() -> None:
    with pytest.raises(ValidationError, match="provisionedConcurrency: must be >= 0"):
        version("a", provisionedConcurrency=-1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {
                "functionVersion": "$LATEST",
                "routingConfig": {"additionalVersionWeights": {"2": 0.5}},
            },
            "must point to a published version, not $LATEST",
        ),
        (
            {"functionVersion": "1", "routingConfig": {"additionalVersionWeights": {"2": 1.5}}},
            "must be greater than 0 and less than 1",
        ),
        (
            {
                "functionVersion": "1",
                "routingConfig": {"additionalVersionWeights": {"2": 0.1, "3": 0.1}},
            },
            "must have at most 1 entries",
        ),
        (
            {"functionVersion": "1", "routingConfig": {"additionalVersionWeights": {"1": 0.1}}},
            "must differ from functionVersion",
        ),
        ({"functionVersion": "$LATEST", "provisionedConcurrency": 2}, "needs a published version"),
        ({"functionVersion": "live"}, "must be a version number or $LATEST"),
        ({"functionVersion": "1", "name": "42"}, "alias name cannot be a number"),
    ],
)
def test_alias_rules(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("$", r"\$")):
        obj("Alias", "a", {"functionName": "fn", **spec})


def test_alias_plan_checks_versions_and_duplicates() -> None:
    versions = {"1": version("v1", "1"), "2": version("v2", "2")}
    plan = plan_function(
        True,
        versions,
        [
            alias("live", "1", {"2": 0.25}, pc=8),
            alias("bad", "9"),
            obj("Alias", "other", {"functionName": "fn", "name": "live", "functionVersion": "1"}),
        ],
        None,
    )
    live, bad, dup = plan.aliases
    assert (live.name, live.primary, live.weights, live.problem) == ("live", "1", {"2": 0.25}, None)
    assert live.provisioned == {"1": 6, "2": 2}
    assert bad.problem is not None and bad.problem[0] == "VersionNotFound"
    assert dup.problem is not None and dup.problem[0] == "DuplicateAlias"
    assert plan.provisioned == {"1": 6, "2": 2}


def test_provisioned_concurrency_counts_against_reserved() -> None:
    versions = {"1": version("v1", "1", provisionedConcurrency=2)}
    plan = plan_function(True, versions, [alias("live", "1", pc=3)], reserved=4)
    assert plan.problem is not None and plan.problem[0] == "ProvisionedExceedsReserved"
    assert plan.provisioned == {}
    assert plan_function(True, versions, [alias("live", "1", pc=2)], reserved=4).provisioned == {
        "1": 4
    }


def test_split_provisioned_adds_up() -> None:
    for total in range(0, 20):
        split = split_provisioned(total, "1", {"2": 0.3})
        assert sum(split.values()) == total


def test_reservations_leave_the_unreserved_minimum() -> None:
    order = [("ns", "a"), ("ns", "b"), ("ns", "c")]
    granted, refused = honoured_reservations(
        {("ns", "a"): 500, ("ns", "b"): 450, ("ns", "c"): 0}, order, regional_limit=1000
    )
    assert granted == {("ns", "a"): 500, ("ns", "c"): 0}
    assert "leave less than 100" in refused[("ns", "b")]


def test_weighted_pick_matches_weights() -> None:
    rng = random.Random(7)
    picks = [pick("1", {"2": 0.2}, rng.random()) for _ in range(20000)]
    assert abs(picks.count("2") / len(picks) - 0.2) < 0.01
    assert pick("1", {"2": 0.2}, 0.19) == "2" and pick("1", {"2": 0.2}, 0.2) == "1"


def test_select_resolves_qualifiers() -> None:
    route = FunctionRoute(
        "ns",
        "fn",
        "arn",
        None,
        {"$LATEST": VersionTarget("$LATEST"), "1": VersionTarget("1"), "2": VersionTarget("2")},
        {"live": AliasRoute("live", "1", {"2": 0.5})},
    )
    assert select(route, None, 0.9).version == "$LATEST"
    assert select(route, "2", 0.9).version == "2"
    assert select(route, "live", 0.1).version == "2"
    assert select(route, "live", 0.9).version == "1"
    assert select(route, "live", 0.9).alias == "live"
    for bad in ("7", "nope"):
        with pytest.raises(UnknownQualifier):
            select(route, bad, 0.5)


def test_limiter_reserved_and_unreserved() -> None:
    lim = ConcurrencyLimiter(regional_limit=102)
    lim.reserved_total = 2
    lim.acquire(("ns", "r"), 2)
    lim.acquire(("ns", "r"), 2)
    with pytest.raises(TooManyRequests) as info:
        lim.acquire(("ns", "r"), 2)
    assert info.value.extra["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    for _ in range(100):
        lim.acquire(("ns", "u"), None)
    with pytest.raises(TooManyRequests) as info:
        lim.acquire(("ns", "v"), None)
    assert info.value.extra["Reason"] == "ConcurrentInvocationLimitExceeded"
    lim.release(("ns", "u"), None)
    lim.acquire(("ns", "v"), None)
    lim.release(("ns", "r"), 2)
    lim.acquire(("ns", "r"), 2)
    with pytest.raises(TooManyRequests):
        lim.acquire(("ns", "zero"), 0)
    assert lim.inflight(("ns", "zero")) == 0
