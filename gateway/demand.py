"""The gateway's demand reports on Kubernetes: what it needs of each version, never replicas.

The operator alone sizes a version's Deployment (``klambda.api.scaling``); this gateway tells
it, in an annotation of the Deployment that only this gateway writes (``demand.klambda.io/<its
name>``), how many environments its invocations want and when it last invoked the version. A
merge patch of one annotation reads nothing first, so reports of several gateway replicas never
overwrite each other, and none of them races the operator's own writes.

Reports are made at once when a version must start or grow, and refreshed every ``refresh``
seconds for versions used within the keep-warm period, so they stay live (``REPORT_TTL``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from klambda.api import scaling
from klambda.api.tasks import cancel_and_wait
from klambda.kube import names
from klambda.kube.client import KubeClient, KubeError, NotFound
from klambda.kube.workloads import deployments_path

log = logging.getLogger(__name__)

VersionKey = tuple[str, str, str]


def annotation_key(gateway: str) -> str:
    """The annotation this gateway reports in (its name, made a valid annotation name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", gateway).strip("-._")[:63] or "gateway"
    return scaling.DEMAND_ANNOTATION_PREFIX + name


class DemandReporter:
    def __init__(
        self,
        client: KubeClient,
        gateway: str,
        keep_warm: float,
        refresh: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.key = annotation_key(gateway)
        self.keep_warm = keep_warm
        self.refresh = refresh or max(1.0, min(keep_warm / 4, scaling.REPORT_TTL / 4))
        self.clock = clock
        self._used: dict[VersionKey, float] = {}
        self._wanted: dict[VersionKey, int] = {}
        self._sending: dict[VersionKey, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._refresh_forever(), name="demand-reports")

    async def stop(self) -> None:
        await cancel_and_wait([self._loop, *self._sending.values()])

    def touch(self, key: VersionKey) -> None:
        """An invocation of ``key`` ran here."""
        self._used[key] = self.clock()

    async def want(self, key: VersionKey, environments: int) -> None:
        """Reports at once that ``key`` should run at least ``environments``."""
        self.touch(key)
        self._wanted[key] = max(self._wanted.get(key, 0), environments)
        await self._report(key)

    def want_soon(self, key: VersionKey, environments: int) -> None:
        """``want`` without waiting; one report in flight per version at a time."""
        if key in self._sending:
            self._wanted[key] = max(self._wanted.get(key, 0), environments)
            return
        task = asyncio.create_task(self.want(key, environments), name=f"demand-{key[1]}")
        self._sending[key] = task
        task.add_done_callback(lambda _: self._sending.pop(key, None))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            now = self.clock()
            for key, used in list(self._used.items()):
                if now - used >= self.keep_warm + self.refresh:
                    del self._used[key]  # reported idle once more below, then left to expire
                await self._report(key)

    async def _report(self, key: VersionKey) -> None:
        namespace, function, version = key
        now = self.clock()
        demand = scaling.Demand(self._wanted.pop(key, 0), self._used.get(key, 0.0), now)
        patch = {"metadata": {"annotations": {self.key: demand.encode()}}}
        path = deployments_path(namespace, names.deployment_name(function, version))
        try:
            await self.client.patch(path, patch)
        except NotFound:
            self._used.pop(key, None)  # the version is gone
        except KubeError as e:
            log.warning("demand report for %s/%s:%s failed: %s", *key, e)
