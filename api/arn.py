"""Lambda ARNs and the names callers use for functions.

Namespace = account: each namespace maps to a 12-digit account id (derived from its name unless
configured), so ``arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`` names one
function in one namespace.
"""

from __future__ import annotations

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


def account_for(namespace: str) -> str:
    """The default account id of a namespace: stable, 12 digits, derived from its name."""
    digest = int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "big")
    return f"{digest % 10**12:012d}"


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def queue_arn(region: str, account: str, name: str) -> str:
    """An event-source queue's ARN, shaped as SQS's (records carry it as eventSourceARN)."""
    return f"arn:aws:sqs:{region}:{account}:{name}"


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
