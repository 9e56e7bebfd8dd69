"""Lambda ARNs and the names callers use for functions.

Namespace = account: each namespace maps to a 12-digit account id (derived from its name unless
configured), so ``arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`` names one
function in one namespace.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
QUALIFIER_RE = re.compile(r"^(\$LATEST|[a-zA-Z0-9_-]{1,128})$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:(?P<rest>.+)$"
)
_PARTIAL_RE = re.compile(r"^(?P<account>\d{12}):function:(?P<rest>.+)$")


@functools.lru_cache(maxsize=4096)
def account_for(namespace: str) -> str:
    """The default account id of a namespace: stable, 12 digits, derived from its name
    (cached: every invocation asks)."""
    digest = int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "big")
    return f"{digest % 10**12:012d}"


class AccountIds:
    """Which namespaces hold functions, by account id.

    Ids are 12 digits derived from names, so two names can share one: found by search, a
    colliding name would pass Lambda's same-account rule, or a policy naming the other's
    account. Authorization compares namespaces, never ids; and while two namespaces with
    functions share an id, both are refused (``collision``), whichever came first, until one is
    renamed: nothing is decided by an id that names two accounts.
    """

    def __init__(self) -> None:
        self._functions: dict[str, dict[str, set[str]]] = {}
        """account id -> namespace -> names of its functions"""

    def update(self, namespace: str, name: str, present: bool) -> set[str]:
        """Records a function's existence; returns the namespaces whose collision changed."""
        account = account_for(namespace)
        holders = self._functions.setdefault(account, {})
        before = set(holders) if len(holders) > 1 else set()
        names = holders.setdefault(namespace, set())
        if present:
            names.add(name)
        else:
            names.discard(name)
            if not names:
                del holders[namespace]
        if not holders:
            del self._functions[account]
        after = set(holders) if len(holders) > 1 else set()
        return before ^ after

    def namespaces(self, account: str) -> list[str]:
        """The namespaces with functions whose account id is ``account``."""
        return sorted(self._functions.get(account, {}))

    def collision(self, namespace: str) -> str | None:
        """Another namespace with functions and ``namespace``'s account id, if any."""
        others = sorted(set(self._functions.get(account_for(namespace), {})) - {namespace})
        return others[0] if others else None


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def queue_arn(region: str, account: str, name: str) -> str:
    """An event-source queue's ARN, shaped as SQS's (records carry it as eventSourceARN)."""
    return f"arn:aws:sqs:{region}:{account}:{name}"


def stream_arn(region: str, account: str, name: str) -> str:
    """A stream's ARN, shaped as Kinesis's (records carry it as eventSourceARN)."""
    return f"arn:aws:kinesis:{region}:{account}:stream/{name}"


class InvalidFunctionName(ValueError):
    """The FunctionName (or qualifier) a caller sent cannot name a function."""


@dataclass(frozen=True)
class FunctionRef:
    """A function as a caller named it: name, and optionally account and qualifier."""

    name: str
    qualifier: str | None = None
    account: str | None = None
    region: str | None = None


def parse_function_name(value: str, qualifier: str | None = None) -> FunctionRef:
    """Parses Lambda's FunctionName forms: name, name:q, account:function:name[:q], full ARN.

    ``qualifier`` (the Qualifier query parameter) must agree with one inside the name.
    """
    account = region = None
    rest = value
    if m := _ARN_RE.match(value):
        account, region, rest = m["account"], m["region"], m["rest"]
    elif m := _PARTIAL_RE.match(value):
        account, rest = m["account"], m["rest"]
    name, sep, inner = rest.partition(":")
    if not NAME_RE.match(name):
        raise InvalidFunctionName(
            f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
            r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
        )
    if sep and not QUALIFIER_RE.match(inner):
        raise InvalidFunctionName(f"Invalid qualifier {inner!r} in function name {value!r}")
    if qualifier is not None and not QUALIFIER_RE.match(qualifier):
        raise InvalidFunctionName(f"Invalid qualifier {qualifier!r}")
    if sep and qualifier is not None and inner != qualifier:
        raise InvalidFunctionName(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(name, (inner if sep else None) or qualifier, account, region)
