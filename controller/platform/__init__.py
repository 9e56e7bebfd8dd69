"""The platform port: where function versions actually run.

The controller's reconcile logic is written once against ``Platform``; adapters implement it
(``local``: shim processes on this machine; Kubernetes: Deployments of shim pods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from klambda.api.objects import FunctionKey
from klambda.api.reasons import Reason
from klambda.api.shim_config import ShimConfig
from klambda.api.types import Code, FunctionSpec
from klambda.controller.code import CodeBundle
from klambda.controller.reconcile import RunningShim, ShimKey


class StartFailed(Exception):
    """A shim could not start. ``permanent`` (default: the Reason's) stops retries until the
    spec changes."""

    def __init__(self, reason: Reason, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = reason.permanent if permanent is None else permanent


@dataclass(frozen=True)
class Observation:
    """What a running version reports about its environments (locally its shim; on
    Kubernetes its pods, one environment each, and the gateways' demand reports)."""

    environments: int
    busy: int
    """Environments in use now (Kubernetes: what live reports use, at most the ready pods)."""
    provisioned_target: int
    provisioned_ready: int
    idle_seconds: float
    """Seconds since the version was last invoked (0 when never, as far as is known)."""


class Platform(Protocol):
    """Adapters also call their ``on_change(key)`` (wired to ``Controller.shim_changed``) when
    what runs for a version changed by itself: a shim died; on Kubernetes a Deployment or pod
    changed."""

    pushes_observations: bool
    """True when every change of what ``observe`` reports is announced through
    ``on_change`` (Kubernetes' watches); False when it must be polled (local shims' idleness)."""

    def running(self, function: FunctionKey | None = None) -> dict[ShimKey, RunningShim]:
        """Shims that run now, by key (the newest one per key): of ``function``, or all."""
        ...

    def endpoints(self, key: ShimKey) -> tuple[str, ...]:
        """Addresses that take invocations for ``key`` now, newest first."""
        ...

    async def prepare_code(
        self,
        code: Code,
        config_maps: Mapping[str, Mapping[str, str]],
        pinned_sha256: str | None,
        version: str,
    ) -> CodeBundle[Any]:
        """Puts the code where this platform's shims read it; raises StartFailed.

        ``pinned_sha256``: a published version's CodeSha256, which the code must still have.
        The bundle's ``ref`` is this platform's own; only its ``start`` reads it.
        """
        ...

    async def start(self, config: ShimConfig, code: CodeBundle[Any], spec: FunctionSpec) -> None:
        """Starts a shim for ``config`` running ``code`` (from this platform's
        ``prepare_code``; the platform sets ``config.code_dir``), and returns once it takes
        invocations. ``spec``'s secretRefs are resolved where the platform keeps Secrets (the
        local store; on Kubernetes the kubelet, from the API).

        If one runs for the same key, it is drained and stopped after the new one is ready.
        Raises StartFailed.
        """
        ...

    async def stop(self, key: ShimKey) -> None:
        """Drains and stops the shim of ``key``."""
        ...

    async def provision(self, key: ShimKey, count: int) -> None:
        """Sets how many environments the shim of ``key`` keeps initialised."""
        ...

    async def scale(self, key: ShimKey) -> float | None:
        """Sizes the running version from its provisioned concurrency and the demand this
        platform observes (``klambda.api.scaling``); called on every reconcile of its function.
        The one writer of a version's size. Returns the seconds after which the size may change
        by the clock alone (a keep-warm period running out), or None."""
        ...

    async def observe(self, key: ShimKey) -> Observation | None:
        """The shim's own report, or None when it cannot be reached."""
        ...

    async def close(self) -> None:
        """Stops everything this platform started."""
        ...
