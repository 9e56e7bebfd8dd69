"""Leader election with a coordination.k8s.io/v1 Lease: several operator replicas, one active.

The holder renews the Lease every ``renew`` seconds; others take it over once it has not been
renewed for ``duration`` seconds. Writes carry the resourceVersion they read, so two candidates
racing for an expired Lease cannot both win (one gets 409 Conflict). A leader that cannot renew
in time steps down: ``lost`` is set and the caller stops acting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from klambda.kube.client import Conflict, KubeClient, KubeError, NotFound, path_for

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> float:
    if not ts:
        return 0.0
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(ts, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return 0.0


def expired(spec: dict[str, Any], now: float) -> bool:
    renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
    return now - renewed > float(spec.get("leaseDurationSeconds") or 0)


class LeaderElection:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.lost = asyncio.Event()

    @property
    def path(self) -> str:
        return path_for("coordination.k8s.io", "v1", "leases", self.namespace, self.name)

    async def acquire(self) -> None:
        """Returns once this candidate holds the Lease."""
        while not await self._try():  # noqa: ASYNC110 - polling the API is the protocol
            await asyncio.sleep(self.renew)
        log.info(
            "leader election: %s leads (lease %s/%s)", self.identity, self.namespace, self.name
        )

    async def keep(self) -> None:
        """Renews until cancelled; sets ``lost`` and returns if the Lease slips away."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.renew)
            try:
                held = await self._try()
            except KubeError as e:
                log.warning("leader election: renewing failed: %s", e)
                held = time.monotonic() - last < self.duration
                if held:
                    continue
            if not held:
                log.error("leader election: lost the lease; stepping down")
                self.lost.set()
                return
            last = time.monotonic()

    async def release(self) -> None:
        """Gives the Lease up at once (graceful shutdown), so another replica need not wait."""
        try:
            lease = await self.client.get(self.path)
            if lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            spec = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": "1970-01-01T00:00:00.000000Z",
            }
            await self.client.replace(self.path, {**lease, "spec": spec})
        except KubeError as e:
            log.warning("leader election: releasing the lease failed: %s", e)

    async def _try(self) -> bool:
        try:
            lease = await self.client.get(self.path)
        except NotFound:
            return await self._create()
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity")
        if holder != self.identity and not expired(spec, time.time()):
            return False
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _now(),
        }
        if holder != self.identity:
            new_spec["acquireTime"] = _now()
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        body = {**lease, "spec": new_spec}
        try:
            await self.client.replace(self.path, body)
        except Conflict:
            return False
        return True

    async def _create(self) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.duration),
                "acquireTime": _now(),
                "renewTime": _now(),
                "leaseTransitions": 0,
            },
        }
        try:
            await self.client.create(
                path_for("coordination.k8s.io", "v1", "leases", self.namespace), body
            )
        except Conflict:
            return False
        return True
