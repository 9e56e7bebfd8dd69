"""The Version kind: an immutable, numbered snapshot of a Function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from klambda.api.schema import prop
from klambda.api.types.async_config import AsyncConfig
from klambda.api.types.common import (
    FUNCTION_NAME_MAX,
    FUNCTION_NAME_PATTERN,
    Condition,
    ProvisionedStatus,
)

VERSION_NUMBER_PATTERN = r"^[0-9]+$"
ALIAS_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"


@dataclass(frozen=True)
class VersionSpec:
    """An immutable, numbered snapshot of a Function's code and configuration (PublishVersion).

    The platform numbers versions 1, 2, 3, ... per function, never reusing a number, and records
    the snapshot in status when it first sees the object.
    """

    __cel__ = (
        (
            "self.functionName == oldSelf.functionName && "
            "self.description == oldSelf.description && "
            "(has(self.codeSha256) == has(oldSelf.codeSha256)) && "
            "(!has(self.codeSha256) || self.codeSha256 == oldSelf.codeSha256)",
            "a Version is immutable (only provisionedConcurrency may change): publish a new one",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN,
        max_length=FUNCTION_NAME_MAX,
        doc="The Function to snapshot.",
    )
    description: str = prop(default="", max_length=256, doc="Free text for this version.")
    code_sha256: str | None = prop(
        default=None,
        name="codeSha256",
        max_length=64,
        doc="Publish only if the function's code has this CodeSha256 (Lambda's precondition).",
    )
    provisioned_concurrency: int = prop(
        default=0,
        minimum=0,
        doc="Environments kept initialised for this version before traffic arrives.",
    )
    async_config: AsyncConfig | None = prop(
        default=None,
        name="asyncConfig",
        doc="Asynchronous invocation settings of this version, instead of the function's "
        "(may change: it is not part of the snapshot).",
    )


IMMUTABLE_VERSION_FIELDS = ("function_name", "description", "code_sha256")


@dataclass(frozen=True)
class VersionStatus:
    """The version's number and snapshot, recorded once."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    version: str = prop(default="", doc="The version number, e.g. 3.")
    code_sha256: str = prop(default="", name="codeSha256", doc="CodeSha256 of the snapshot.")
    config_hash: str = prop(default="", doc="Hash of the snapshot's runtime configuration.")
    function_spec: Any = prop(default=None, doc="The Function spec as published.")
    provisioned_concurrency: ProvisionedStatus | None = prop(
        default=None, doc="Provisioned environments of this version."
    )
