"""IAM-style policies, pure: parsing, and Lambda's evaluation rules.

Documents are IAM JSON (``Version``, ``Statement`` with ``Effect``, ``Action``/``NotAction``,
``Resource``/``NotResource``, ``Principal`` in resource policies, ``Condition``). Evaluation:
an explicit Deny anywhere wins; in the same account, the identity policy OR the resource policy
must allow; across accounts (namespaces), both must.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ContextValue = str | list[str]


class PolicyError(ValueError):
    """A policy document is malformed; the message names the statement and field."""


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ("*",)
    not_resources: tuple[str, ...] = ()
    principals: tuple[str, ...] | None = None
    """None: an identity policy statement (no Principal element)."""
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    sid: str = ""


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...] = ()


OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike",
    "IpAddress", "NotIpAddress", "Bool", "Null", "NumericEquals", "NumericNotEquals",
    "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan",
    "NumericGreaterThanEquals",
}  # fmt: skip
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals",
            "ArnNotLike", "NotIpAddress", "NumericNotEquals"}  # fmt: skip


# --------------------------------------------------------------------------- parsing


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{where} must be a string or a non-empty list of strings")


def _principals(value: Any, where: str) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if isinstance(value, dict) and set(value) <= {"AWS", "Service"} and value:
        out: list[str] = []
        for key, v in value.items():
            out += [s if key == "AWS" else f"service:{s}" for s in _strings(v, f"{where}.{key}")]
        return tuple(out)
    raise PolicyError(f'{where} must be "*" or {{"AWS": ...}}')


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    raise PolicyError("condition values must be strings, numbers or booleans")


def _conditions(value: Any, where: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be an object")
    out = []
    for op, body in value.items():
        base = op.removesuffix("IfExists")
        for prefix in ("ForAnyValue:", "ForAllValues:"):
            base = base.removeprefix(prefix)
        if base not in OPERATORS:
            raise PolicyError(f"{where}: unsupported condition operator {op!r}")
        if not isinstance(body, dict) or not body:
            raise PolicyError(f"{where}.{op} must be an object of key: value(s)")
        for key, values in body.items():
            listed = values if isinstance(values, list) else [values]
            if not listed:
                raise PolicyError(f"{where}.{op}.{key} must not be empty")
            try:
                vs = tuple(_scalar(v) for v in listed)
            except PolicyError as e:
                raise PolicyError(f"{where}.{op}.{key}: {e}") from None
            out.append((op, key.lower(), vs))
    return tuple(out)


def parse_policy(doc: Any, *, resource_policy: bool) -> Policy:
    """Parses an IAM JSON document (a dict), raising PolicyError with what is wrong."""
    if not isinstance(doc, dict):
        raise PolicyError("a policy must be an object with a Statement list")
    raw = doc.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise PolicyError("Statement must be a non-empty list")
    return Policy(tuple(_statement(s, i, resource_policy) for i, s in enumerate(raw)))


def _statement(s: Any, i: int, resource_policy: bool) -> Statement:
    where = f"Statement[{i}]"
    if not isinstance(s, dict):
        raise PolicyError(f"{where} must be an object")
    effect = s.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{where}.Effect must be "Allow" or "Deny"')
    if ("Action" in s) == ("NotAction" in s):
        raise PolicyError(f"{where} needs exactly one of Action or NotAction")
    if "Resource" in s and "NotResource" in s:
        raise PolicyError(f"{where} cannot have both Resource and NotResource")
    if not resource_policy and "Resource" not in s and "NotResource" not in s:
        raise PolicyError(f"{where} needs Resource or NotResource")
    principals = None
    if resource_policy:
        if "Principal" not in s:
            raise PolicyError(f"{where} needs a Principal in a resource policy")
        principals = _principals(s["Principal"], f"{where}.Principal")
    elif "Principal" in s:
        raise PolicyError(f"{where}: an identity policy cannot have a Principal")
    return Statement(
        effect=effect,
        actions=_strings(s["Action"], f"{where}.Action") if "Action" in s else (),
        not_actions=_strings(s["NotAction"], f"{where}.NotAction") if "NotAction" in s else (),
        resources=_strings(s["Resource"], f"{where}.Resource")
        if "Resource" in s
        else (() if "NotResource" in s else ("*",)),
        not_resources=(
            _strings(s["NotResource"], f"{where}.NotResource") if "NotResource" in s else ()
        ),
        principals=principals,
        conditions=_conditions(s.get("Condition", {}), f"{where}.Condition"),
        sid=str(s.get("Sid", "")),
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Caller:
    """Who asks: an authenticated principal, or anonymous (None arn)."""

    arn: str | None
    account: str | None
    namespace: str | None = None
    """The principal's namespace: what "same account" compares (ids can collide)."""


@dataclass(frozen=True)
class Ask:
    caller: Caller
    action: str
    resource: str
    resource_account: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    resource_namespace: str | None = None
    """The resource's namespace; with the caller's, it decides "same account"."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_glob(p, action, ignore_case=True) for p in patterns)


def _principal_matches(principals: Sequence[str], caller: Caller) -> bool:
    for p in principals:
        if p == "*":
            return True
        if caller.arn is None:
            continue
        if p == caller.account or p == f"arn:aws:iam::{caller.account}:root":
            return True
        if fnmatch.fnmatchcase(caller.arn, p):
            return True
    return False


def _values(ctx: Mapping[str, ContextValue], key: str) -> list[str] | None:
    value = ctx.get(key)
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def _one(op: str, have: str, want: str) -> bool:
    base = op.removesuffix("IfExists").split(":")[-1]
    if base in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
        return have == want
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return have.lower() == want.lower()
    if base in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike"):
        return _glob(want, have)
    if base in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(have) in ipaddress.ip_network(want, strict=False)
        except ValueError:
            return False
    if base == "Bool":
        return have.lower() == want.lower()
    try:
        a, b = float(have), float(want)
    except ValueError:
        return False
    return {
        "NumericEquals": a == b, "NumericNotEquals": a == b, "NumericLessThan": a < b,
        "NumericLessThanEquals": a <= b, "NumericGreaterThan": a > b,
        "NumericGreaterThanEquals": a >= b,
    }[base]  # fmt: skip


def _condition_holds(op: str, key: str, wanted: tuple[str, ...], ctx: Mapping[str, Any]) -> bool:
    have = _values(ctx, key)
    base = op.removesuffix("IfExists").split(":")[-1]
    if base == "Null":
        return (have is None) == (wanted[0].lower() == "true")
    negated = base in _NEGATED
    if have is None:
        # AWS: a missing key fails a positive operator, satisfies a negated one and
        # ForAllValues (vacuously), and ...IfExists always passes.
        return op.endswith("IfExists") or negated or op.startswith("ForAllValues:")
    if op.startswith("ForAllValues:"):
        hit = all(any(_one(op, h, w) for w in wanted) for h in have)
    else:
        hit = any(_one(op, h, w) for h in have for w in wanted)
    return not hit if negated else hit


def _applies(s: Statement, ask: Ask) -> bool:
    if s.actions and not _action_matches(s.actions, ask.action):
        return False
    if s.not_actions and _action_matches(s.not_actions, ask.action):
        return False
    if s.resources and not any(_glob(r, ask.resource) for r in s.resources):
        return False
    if s.not_resources and any(_glob(r, ask.resource) for r in s.not_resources):
        return False
    if s.principals is not None and not _principal_matches(s.principals, ask.caller):
        return False
    ctx = {k.lower(): v for k, v in ask.context.items()}
    return all(_condition_holds(op, key, vs, ctx) for op, key, vs in s.conditions)


def _verdict(policies: Iterable[Policy], ask: Ask) -> tuple[bool, bool]:
    """(explicitly denied, allowed) by these policies."""
    allowed = False
    for policy in policies:
        for s in policy.statements:
            if _applies(s, ask):
                if s.effect == "Deny":
                    return True, False
                allowed = True
    return False, allowed


def evaluate(identity: Iterable[Policy], resource: Policy | None, ask: Ask) -> Decision:
    """Lambda's rules: explicit Deny wins; same account: either allows; cross account: both."""
    id_policies = list(identity)
    id_deny, id_allow = _verdict(id_policies, ask)
    res_deny, res_allow = _verdict([resource] if resource else [], ask)
    if id_deny or res_deny:
        where = "an identity-based" if id_deny else "a resource-based"
        return Decision(False, f"with an explicit deny in {where} policy")
    if ask.caller.arn is None:  # anonymous: only a resource policy can let it in
        if res_allow:
            return Decision(True, "allowed")
        return Decision(False, "because no resource-based policy allows anonymous callers")
    if ask.caller.namespace is not None and ask.resource_namespace is not None:
        same_account = ask.caller.namespace == ask.resource_namespace  # never by derived id
    else:
        same_account = ask.caller.account == ask.resource_account
    if same_account and (id_allow or res_allow):
        return Decision(True, "allowed")
    if not same_account and id_allow and res_allow:
        return Decision(True, "allowed")
    if not same_account and id_allow:
        return Decision(False, f"because no resource-based policy allows the {ask.action} action")
    return Decision(False, f"because no identity-based policy allows the {ask.action} action")
