"""The gateway's view of where functions run, kept current by the platform."""

from __future__ import annotations

import asyncio
from typing import Any

from klambda.api.arn import AccountIds, account_for
from klambda.api.routes import (
    EventSource,
    EventSourceRoute,
    FunctionRoute,
    Intake,
    ScheduleRoute,
)


class RoutingTable:
    """Function routes by (namespace, name). Updates replace whole records atomically."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], FunctionRoute] = {}
        self._accounts: dict[str, str] = {}
        self._reserved = 0
        self._synced = asyncio.Event()
        self._sources: dict[tuple[str, str], EventSource] = {}
        self._schedules: dict[tuple[str, str], ScheduleRoute] = {}
        self._intakes: dict[tuple[str, str, str], Intake] = {}
        self.accounts = AccountIds()
        """The namespaces with functions, by account id (collisions are refused)."""
        self.event_sources_changed = asyncio.Event()
        """Set whenever the event source mappings change (the pollers' supervisor waits on it)."""

    def mark_synced(self) -> None:
        """The platform has published every route it knows: absence now means absence."""
        self._synced.set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def publish(self, route: FunctionRoute) -> None:
        old = self._routes.get((route.namespace, route.name))
        self._routes[(route.namespace, route.name)] = route
        if old is None:
            self.accounts.update(route.namespace, route.name, True)
        self._reserved += (route.reserved_concurrency or 0) - (
            (old.reserved_concurrency or 0) if old else 0
        )

    def publish_event_source(self, source: EventSource) -> None:
        """Adds or replaces one event source mapping: its poller's route (None while it
        cannot deliver or is disabled) and its Lambda configuration."""
        key = (source.namespace, source.name)
        old = self._sources.get(key)
        self._sources[key] = source
        if old is None or old.route != source.route:
            self.event_sources_changed.set()

    def withdraw_event_source(self, namespace: str, name: str) -> None:
        old = self._sources.pop((namespace, name), None)
        if old is not None and old.route is not None:
            self.event_sources_changed.set()

    def event_sources(self) -> tuple[EventSourceRoute, ...]:
        """The pollers' routes, in name order."""
        return tuple(s.route for _, s in sorted(self._sources.items()) if s.route is not None)

    def event_source_configurations(self, namespace: str) -> list[dict[str, Any]]:
        return [s.configuration for (ns, _), s in sorted(self._sources.items()) if ns == namespace]

    def publish_schedule(self, route: ScheduleRoute) -> None:
        """Adds or replaces a Schedule the scheduler fires."""
        self._schedules[(route.namespace, route.name)] = route

    def withdraw_schedule(self, namespace: str, name: str) -> None:
        self._schedules.pop((namespace, name), None)

    def schedules(self) -> tuple[ScheduleRoute, ...]:
        return tuple(route for _, route in sorted(self._schedules.items()))

    def publish_intake(self, intake: Intake) -> None:
        """Adds or replaces a Queue or Stream producers can write to."""
        self._intakes[(intake.kind, intake.namespace, intake.name)] = intake

    def withdraw_intake(self, kind: str, namespace: str, name: str) -> None:
        self._intakes.pop((kind, namespace, name), None)

    def intake(self, kind: str, namespace: str, name: str) -> Intake | None:
        return self._intakes.get((kind, namespace, name))

    def intake_namespace(self, account: str) -> str | None:
        """The namespace whose account id this is, among namespaces with queues, streams or
        functions; None when none or two share it."""
        holders = {ns for _, ns, _ in self._intakes if self.account(ns) == account}
        holders |= set(self.accounts.namespaces(account))
        return holders.pop() if len(holders) == 1 else None

    def intakes(self, kind: str, namespace: str) -> list[Intake]:
        """A namespace's queues (or streams), in name order."""
        return [i for k, i in sorted(self._intakes.items()) if k[:2] == (kind, namespace)]

    def withdraw(self, namespace: str, name: str) -> None:
        old = self._routes.pop((namespace, name), None)
        if old is not None:
            self._reserved -= old.reserved_concurrency or 0
            self.accounts.update(namespace, name, False)

    def reserved_total(self) -> int:
        """Concurrency reserved by all functions (kept out of the shared pool); kept current
        on every publish, since every invocation asks."""
        return self._reserved

    def get(self, namespace: str, name: str) -> FunctionRoute | None:
        return self._routes.get((namespace, name))

    def live_endpoints(self) -> set[str]:
        return {a for r in self._routes.values() for t in r.versions.values() for a in t.endpoints}

    def routes(self) -> list[FunctionRoute]:
        return list(self._routes.values())

    def account(self, namespace: str) -> str:
        account = self._accounts.get(namespace)
        if account is None:
            account = self._accounts[namespace] = account_for(namespace)
        return account

    def namespace_of(self, account: str) -> str | None:
        """The namespace whose account id this is, among namespaces with functions; None
        also when two share it (an id that names two accounts decides nothing)."""
        holders = self.accounts.namespaces(account)
        return holders[0] if len(holders) == 1 else None
