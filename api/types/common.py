"""What every kind shares: the API group, name rules and limits, conditions, printer columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from klambda.api.schema import prop

GROUP = "klambda.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Runtime = Literal[
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "provided",
    "provided.al2",
    "provided.al2023",
]
AuthType = Literal["NONE", "AWS_IAM"]
InvokeMode = Literal["BUFFERED", "RESPONSE_STREAM"]
CorsMethod = Literal["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"]

# Lambda names allow [a-zA-Z0-9-_]{1,64}; Kubernetes object names are DNS labels. A Function's
# name is its metadata.name, so it must satisfy both, and it stays usable as a host-name label.
FUNCTION_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
FUNCTION_NAME_MAX = 63
ENV_KEY_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]*$"
CODE_PATH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$"
ENV_TOTAL_MAX = 4096
ENV_VARIABLES_MAX = 256  # 4 KB cannot hold many more; bounds the API server's validation cost
INLINE_FILES_MAX = 256
SECRET_REFS_MAX = 64
INLINE_FILE_MAX = 1024 * 1024  # an object is at most ~1.5 MB in etcd anyway

# Lambda refuses these as user variables: the platform sets them.
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

Problems = Iterator[tuple[str, str]]


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition; Reason is a CamelCase constant, Message is for humans."""

    type: str = prop(doc="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = prop(doc="True, False or Unknown.")
    reason: str = prop(default="", doc="CamelCase reason for the status.")
    message: str = prop(default="", doc="Human-readable detail.")
    last_transition_time: str = prop(default="", doc="When status last changed (RFC 3339).")
    observed_generation: int = prop(default=0, doc="Generation the condition was computed for.")


@dataclass(frozen=True)
class ProvisionedStatus:
    """Provisioned concurrency: asked for, placed on versions, initialised and ready."""

    requested: int = prop(default=0, doc="Environments asked for.")
    allocated: int = prop(default=0, doc="Environments the platform is keeping.")
    ready: int = prop(default=0, doc="Environments initialised and ready for traffic.")


@dataclass(frozen=True)
class Column:
    """A ``kubectl get`` printer column."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """How one kind is named on the API; the spec class carries its schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type
    status: type | None
    columns: tuple[Column, ...] = ()
    name_rules: tuple[tuple[str, str], ...] = ()
    """CEL rules on metadata.name beyond Kubernetes' own (which already enforce DNS rules)."""


READY_COLUMN = Column("Ready", '.status.conditions[?(@.type=="Ready")].status')
REASON_COLUMN = Column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1)
AGE_COLUMN = Column("Age", ".metadata.creationTimestamp", "date")


def name_problems(name: Any) -> list[str]:
    """Why ``name`` is not a valid function name (empty when it is)."""
    problems = object_name_problems(
        name,
        FUNCTION_NAME_PATTERN,
        f"must be no more than {FUNCTION_NAME_MAX} characters",
        FUNCTION_NAME_MAX,
        "alphanumeric characters or '-'",
    )
    if isinstance(name, str) and "--" in name:
        problems.append("must not contain '--' (it separates the alias in function URL ids)")
    return problems


def object_name_problems(
    name: Any, pattern: str, too_long: str, limit: int, allowed: str
) -> list[str]:
    """Why ``name`` cannot name an object whose names match ``pattern`` and are at most
    ``limit`` characters (the messages say so in Kubernetes' words)."""
    if not isinstance(name, str) or not name:
        return ["required value"]
    problems = []
    if len(name) > limit:
        problems.append(too_long)
    if not re.fullmatch(pattern, name):
        problems.append(
            f"must consist of lower case {allowed}, and must start and end with an "
            "alphanumeric character"
        )
    return problems
