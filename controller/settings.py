"""The controller's settings, where its routes go, and the shim settings it derives (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from klambda.api import defaults
from klambda.api import world as world_mod
from klambda.api.arn import account_for, function_arn
from klambda.api.routes import EventSource, FunctionRoute, Intake, ScheduleRoute
from klambda.api.shim_config import ShimConfig
from klambda.controller.reconcile import DesiredShim


class RouteSink(Protocol):
    """Where routes go: the gateway's routing table (the operator has none: gateways build
    their own from the same objects)."""

    def publish(self, route: FunctionRoute) -> None: ...

    def withdraw(self, namespace: str, name: str) -> None: ...

    def publish_event_source(self, source: EventSource) -> None: ...

    def withdraw_event_source(self, namespace: str, name: str) -> None: ...

    def publish_schedule(self, route: ScheduleRoute) -> None: ...

    def publish_intake(self, intake: Intake) -> None: ...

    def withdraw_intake(self, kind: str, namespace: str, name: str) -> None: ...

    def withdraw_schedule(self, namespace: str, name: str) -> None: ...

    def mark_synced(self) -> None: ...


@dataclass(frozen=True)
class ControllerSettings:
    data_dir: Path
    """Code, logs and shim state live under here."""
    gateway_url: str = f"http://127.0.0.1:{defaults.GATEWAY_PORT}"
    """Base URL users reach the gateway at; function URLs in status start with it."""
    region: str = defaults.REGION
    """Region in ARNs and AWS_REGION."""
    default_namespace: str = defaults.NAMESPACE
    """The namespace whose URL ids carry no namespace suffix."""
    resync_period: float = 10.0
    """Seconds between reconciles of every object when nothing changed (a safety net: changes,
    retries and keep-warm periods queue their objects themselves)."""
    settle_period: float = 0.25
    """Seconds between reconciles of a function while its provisioned environments start."""
    watch_period: float = 2.0
    """Seconds between reconciles of a function whose shims must be polled (provisioned or
    on-demand versions, where the platform does not announce changes)."""
    idle_timeout: float = defaults.KEEP_WARM
    """Seconds an idle environment (and an unreferenced version's shim) is kept warm."""
    max_environments: int = 64
    """Environments per shim at most."""
    concurrency_limit: int = defaults.CONCURRENCY_LIMIT
    """The regional limit: environments busy at once across all functions."""
    every_version: bool = False
    """Keep every published version deployed (Kubernetes: a Deployment scaled to zero costs
    nothing), rather than only referenced or recently used ones (local: shims cost processes)."""
    workers: int = 8
    """Objects reconciled at once (each object by one worker at a time)."""
    zygote: bool = True
    """Python environments are forked from a pre-initialised interpreter (ShimConfig.zygote)."""

    @property
    def route_context(self) -> world_mod.RouteContext:
        return world_mod.RouteContext(self.region, self.gateway_url, self.default_namespace)

    def log_dir(self, namespace: str, name: str) -> Path:
        return self.data_dir / "logs" / namespace / name


def shim_config(want: DesiredShim, settings: ControllerSettings) -> ShimConfig:
    """The settings of the shim that runs ``want`` (the platform sets where the code is)."""
    spec = want.spec
    return ShimConfig(
        function_name=want.name,
        version=want.version,
        runtime=spec.runtime or "",
        handler=spec.handler or "",
        code_dir="",  # where the platform puts the code: it sets this in start()
        function_arn=function_arn(settings.region, account_for(want.namespace), want.name),
        log_dir=str(settings.log_dir(want.namespace, want.name)),
        memory_size=spec.memory_size,
        timeout=float(spec.timeout),
        environment=spec.env,
        # an image's own container gets the Secret values (the shim does not need them)
        inherited_environment=[] if spec.is_image else sorted(spec.secret_refs),
        external_runtime=spec.is_image,
        region=settings.region,
        namespace=want.namespace,
        config_hash=want.config_hash,
        provisioned_concurrency=want.provisioned,
        max_environments=settings.max_environments,
        idle_timeout=settings.idle_timeout,
        zygote=settings.zygote,
    )
