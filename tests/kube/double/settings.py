"""Settings of one API double, and the state its handlers and controllers share."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .auth import TokenBook
from .cel import CelEvaluator
from .meta import Clock, utc_now
from .rbac import Authorizer
from .registry import Registry
from .store import Store


@dataclass(frozen=True)
class Settings:
    history_size: int = 1000
    """Watch events kept per resource; a watch resuming from before them gets 410 Expired."""
    watch_timeout: float = 1800.0
    """Seconds a watch without ``timeoutSeconds`` stays open (kube's minRequestTimeout)."""
    bookmark_interval: float = 1.0
    """Seconds between BOOKMARK events on watches that allow them."""
    controller_delay: float = 0.02
    """Seconds the simulated controllers (GC, namespace, CRD establishing) wait after a change:
    their work is asynchronous, as kube-controller-manager's is."""
    simulate_rollouts: bool = False
    """Write Deployment status as if every rollout completed at once (for Helm's --wait)."""
    git_version: str = "v1.32.0"
    """What ``/version`` reports."""
    host: str = "127.0.0.1"


@dataclass
class ServiceIPs:
    """ClusterIP allocation from 10.96.0.0/12 (10.96.0.1 is the ``kubernetes`` Service's)."""

    network: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")
    _next: int = 10
    _used: set[str] = field(default_factory=set)

    def allocate(self) -> str:
        while True:
            ip = str(self.network.network_address + self._next)
            self._next += 1
            if ip not in self._used:
                self._used.add(ip)
                return ip

    def reserve(self, ip: str) -> bool:
        if ip in self._used:
            return False
        self._used.add(ip)
        return True

    def release(self, ip: str) -> None:
        self._used.discard(ip)


@dataclass
class Cluster:
    """Everything the request handlers and the controllers share (one per double)."""

    settings: Settings
    store: Store
    registry: Registry
    tokens: TokenBook
    cel: CelEvaluator
    authorizer: Authorizer
    """RBAC for callers with a token from :attr:`tokens`."""
    clock: Clock = utc_now
    service_ips: ServiceIPs = field(default_factory=ServiceIPs)
    applied: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    """Server-side apply: the last configuration each field manager applied, per object."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on deletions and CRD writes: wakes the controllers."""

    @classmethod
    def new(cls, settings: Settings, clock: Clock = utc_now) -> Cluster:
        store = Store(history_size=max(1, settings.history_size))
        return cls(
            settings=settings,
            store=store,
            registry=Registry.with_builtins(),
            tokens=TokenBook(),
            cel=CelEvaluator(),
            authorizer=Authorizer(store),
            clock=clock,
        )
