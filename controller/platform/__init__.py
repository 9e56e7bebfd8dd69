"""The platform port: where function versions actually run.

The controller's reconcile logic is written once against ``Platform``; adapters implement it
(``local``: shim processes on this machine; Kubernetes: Deployments of shim pods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from klambda.api.shim_config import ShimConfig
from klambda.api.types import Code, FunctionSpec
from klambda.controller.code import CodeBundle
from klambda.controller.reconcile import RunningShim, ShimKey


class StartFailed(Exception):
    """A shim could not start. ``reason`` is a condition Reason; ``permanent`` stops retries."""

    def __init__(self, reason: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Observation:
    """What a running shim reports about its environments."""

    environments: int
    busy: int
    provisioned_target: int
    provisioned_ready: int
    idle_seconds: float


@dataclass(frozen=True)
class Placement:
    """A running shim's address, as the gateway dials it."""

    key: ShimKey
    config_hash: str
    address: str


class Platform(Protocol):
    def running(self) -> dict[ShimKey, RunningShim]:
        """Shims that run now, by key (the newest one per key)."""
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
    ) -> CodeBundle:
        """Puts the code where this platform's shims read it; raises StartFailed.

        ``pinned_sha256``: a published version's CodeSha256, which the code must still have.
        """
        ...

    async def start(
        self, config: ShimConfig, spec: FunctionSpec, secrets: Mapping[str, Mapping[str, str]]
    ) -> Placement:
        """Starts a shim for ``config`` and returns once it takes invocations.

        ``secrets`` holds the namespace's Secrets where the store has them (locally), for the
        values of ``spec``'s secretRefs; a platform with its own Secret store (Kubernetes)
        resolves them itself.

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

    async def observe(self, key: ShimKey) -> Observation | None:
        """The shim's own report, or None when it cannot be reached."""
        ...

    async def close(self) -> None:
        """Stops everything this platform started."""
        ...
