"""Publishing versions, pure: numbering, snapshots and Lambda's "nothing changed" rule.

A Version object gets its number and snapshot once, the first time the controller sees it with
the Function's code in place. Numbers count up per function and are never reused (the counter
lives in the Function's status, so deleting version 3 does not free 3). Publishing when nothing
changed since the latest version names that version again, as PublishVersion does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from klambda.api import schema
from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.types import FunctionSpec, VersionSpec

# Per-qualifier or function-wide settings, not part of a version (Lambda's rules).
UNVERSIONED = ("url", "description", "reservedConcurrency", "policy")

# Reasons
PUBLISHED = Reason.PUBLISHED
UNCHANGED = Reason.UNCHANGED
PRECONDITION_FAILED = Reason.PRECONDITION_FAILED
FUNCTION_NOT_FOUND = Reason.FUNCTION_NOT_FOUND
FUNCTION_NOT_READY = Reason.FUNCTION_NOT_READY


@dataclass(frozen=True)
class Snapshot:
    """What a version freezes: the function's configuration and the exact code."""

    function_spec: dict[str, Any]
    code_sha256: str
    config_hash: str

    def same_as(self, status: dict[str, Any]) -> bool:
        return (
            status.get("configHash") == self.config_hash
            and status.get("codeSha256") == self.code_sha256
        )


def snapshot(spec: FunctionSpec, code_sha256: str, config_hash: str) -> Snapshot:
    dumped = schema.dump(spec)
    frozen = {k: v for k, v in dumped.items() if k not in UNVERSIONED}
    return Snapshot(frozen, code_sha256, config_hash)


def spec_of(status: dict[str, Any]) -> FunctionSpec:
    """The FunctionSpec a version froze."""
    return schema.parse(FunctionSpec, status["functionSpec"], "status.functionSpec")


def latest_numbered(versions: Iterable[ApiObject]) -> ApiObject | None:
    """The highest-numbered published version among ``versions``."""
    numbered = [o for o in versions if o.status.get("version")]
    return max(numbered, key=lambda o: int(o.status["version"]), default=None)


def unchanged_since(latest: ApiObject | None, current: Snapshot) -> str | None:
    """Lambda's rule: publishing when nothing changed since the latest version gives that
    version again. Its number, or None when something changed."""
    if latest is not None and current.same_as(latest.status):
        return str(latest.status["version"])
    return None


@dataclass(frozen=True)
class Assignment:
    """The outcome of publishing one Version object."""

    obj: ApiObject
    version: str | None
    """The number given, or None when it cannot be published (yet)."""
    reason: Reason
    message: str
    snapshot: Snapshot | None = None


def assign(
    versions: Iterable[ApiObject],
    last_version: int,
    current: Snapshot | None,
    function_exists: bool,
) -> tuple[list[Assignment], int]:
    """Numbers the not-yet-numbered Version objects of one function, oldest first.

    ``versions``: all Version objects of the function; ``last_version``: the function's counter;
    ``current``: the snapshot $LATEST would give now (None while its code is not in place).
    Returns the assignments for objects without a number, and the new counter.
    """
    ordered = sorted(versions, key=lambda o: o.creation_key)
    latest = latest_numbered(ordered)
    out: list[Assignment] = []
    for obj in ordered:
        if obj.status.get("version"):
            continue
        spec: VersionSpec = obj.spec
        if not function_exists:
            out.append(
                Assignment(
                    obj, None, FUNCTION_NOT_FOUND, f'Function "{spec.function_name}" not found'
                )
            )
            continue
        if current is None:
            out.append(
                Assignment(
                    obj, None, FUNCTION_NOT_READY, "waiting for the function's code to be in place"
                )
            )
            continue
        if spec.code_sha256 is not None and spec.code_sha256 != current.code_sha256:
            out.append(
                Assignment(
                    obj,
                    None,
                    PRECONDITION_FAILED,
                    f"codeSha256 {spec.code_sha256} does not match the function's code "
                    f"({current.code_sha256})",
                )
            )
            continue
        if (number := unchanged_since(latest, current)) is not None:
            out.append(
                Assignment(
                    obj, number, UNCHANGED, f"nothing changed since version {number}", current
                )
            )
            continue
        last_version += 1
        number = str(last_version)
        assignment = Assignment(obj, number, PUBLISHED, f"published as version {number}", current)
        out.append(assignment)
        latest = _numbered(obj, number, current)
    return out, last_version


def _numbered(obj: ApiObject, number: str, snap: Snapshot) -> ApiObject:
    """A stand-in for ``obj`` with its new number, for comparing later objects against it."""
    status = {"version": number, "configHash": snap.config_hash, "codeSha256": snap.code_sha256}
    return ApiObject(obj.kind, obj.name, obj.namespace, obj.spec, obj.manifest, status)
