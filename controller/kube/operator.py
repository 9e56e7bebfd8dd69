"""``klambda operator``: the controller on Kubernetes.

Wires the informer-backed store, the Kubernetes platform and the shared reconcile loop behind
leader election (several replicas, one active); stops acting the moment leadership is lost and
shuts down cleanly once ``stop`` is set (the CLI sets it on SIGINT/SIGTERM). Entry points only
wire: the logic lives in the controller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klambda.api import defaults
from klambda.api.routes import LATEST
from klambda.api.tasks import cancel_and_wait
from klambda.controller.controller import Controller
from klambda.controller.kube.builders import KubeSettings
from klambda.controller.kube.events import EVENTS_BURST, EVENTS_QPS, EventRecorder
from klambda.controller.kube.platform import KubePlatform
from klambda.controller.kube.store import KubeStore
from klambda.controller.reconcile import ShimKey
from klambda.controller.settings import ControllerSettings
from klambda.controller.sources import SourceStats
from klambda.kube import names
from klambda.kube.client import KubeClient, KubeConfig
from klambda.kube.leader import LeaderElection
from klambda.kube.shim_key import ensure_shim_key

log = logging.getLogger("klambda.operator")


@dataclass(frozen=True)
class OperatorSettings:
    kubeconfig: str | None = None
    """Kubeconfig path; in a pod the service account is used."""
    namespaces: list[str] | None = None
    """Namespaces to watch; None watches all."""
    lease_namespace: str = defaults.NAMESPACE
    """Where the leader-election Lease lives (the operator's own namespace)."""
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """This replica's name in the Lease."""
    gateway_url: str = defaults.PUBLIC_URL
    """Base URL of the gateway, for function URLs in status."""
    region: str = defaults.REGION
    """Region in ARNs."""
    resync_period: float = 60.0
    """Seconds between reconciles of every object when nothing changed: a safety net only
    (changes, retries, pod and Deployment events and keep-warm timers queue objects
    themselves), so it is long: each one costs a reconcile of every function."""
    lease_duration: float = 15.0
    """Seconds a Lease stays valid without renewal (then another replica takes over)."""
    lease_renew: float = 5.0
    """Seconds between renewals by the leader."""
    api_qps: float = 100.0
    """Requests per second to the API server, sustained (client-go's QPS)."""
    api_burst: int = 200
    """Requests the operator may make at once before api_qps applies."""
    code_hosts: tuple[str, ...] = ("*",)
    """Hosts (shell patterns) that Functions' ``code.zip`` URLs may name: the operator fetches
    them from inside the cluster, so narrow this to where your code lives."""
    pod_cidrs: tuple[str, ...] = ()
    """The cluster's pod address ranges (``KubeSettings.pod_cidrs``)."""
    runtime_images: dict[str, str] = field(default_factory=dict)
    """Runtime image per runtime identifier, over ``KubeSettings.images``' defaults."""
    runtime_pull_policy: str = "IfNotPresent"
    """Pull policy of runtime images."""
    keep_warm: float = defaults.KEEP_WARM
    """Seconds a version may go unused (by the gateways' reports) before its pods scale back
    to its provisioned concurrency."""


def owner_lookup(store: KubeStore) -> Any:
    def owner_of(key: ShimKey) -> dict[str, Any] | None:
        namespace, function, version = key
        if version == LATEST:
            fn = store.find("Function", namespace, function)
            if fn is None:
                return None
            return names.owner_reference("Function", fn.name, fn.manifest["metadata"]["uid"])
        for obj in store.parts("Version", (namespace, function)):
            if obj.status.get("version") == version:
                return names.owner_reference("Version", obj.name, obj.manifest["metadata"]["uid"])
        return None

    return owner_of


async def run(
    settings: OperatorSettings,
    stop: asyncio.Event | None = None,
    stats: SourceStats | None = None,
) -> int:
    """Runs the operator until ``stop``. ``stats``: what queues and streams hold (the
    platform's Redis, wired in by the caller), for their statuses and Schedules' last firing;
    without it those statuses say only whether the objects are ready."""
    stop = stop or asyncio.Event()
    config = KubeConfig.load(settings.kubeconfig)
    client = KubeClient(config, settings.api_qps, settings.api_burst)
    events = EventRecorder(KubeClient(config, EVENTS_QPS, EVENTS_BURST))
    store = KubeStore(client, settings.namespaces, events)
    platform = KubePlatform(
        client,
        KubeSettings(
            platform_namespace=settings.lease_namespace,
            pod_cidrs=settings.pod_cidrs,
            images={**KubeSettings().images, **settings.runtime_images},
            image_pull_policy=settings.runtime_pull_policy,
        ),
        owner_lookup(store),
        keep_warm=settings.keep_warm,
        code_hosts=settings.code_hosts,
    )
    controller = Controller(
        store,
        platform,
        None,  # the operator does not route: gateways build routes from the same objects
        ControllerSettings(
            data_dir=Path(tempfile.gettempdir()) / "klambda-operator",
            gateway_url=settings.gateway_url,
            region=settings.region,
            resync_period=settings.resync_period,
            every_version=True,
        ),
        stats,
    )
    platform.on_change = controller.shim_changed
    leader = LeaderElection(
        client,
        settings.lease_namespace,
        "klambda-operator",
        settings.identity,
        settings.lease_duration,
        settings.lease_renew,
    )
    tasks: list[asyncio.Task[Any]] = []
    leading = False
    try:
        acquired = asyncio.create_task(leader.acquire())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({acquired, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            acquired.cancel()
            return 0
        waiter.cancel()
        leading = True
        platform.shim_key = await ensure_shim_key(client, settings.lease_namespace)
        await store.start()
        events.start()
        tasks = [
            asyncio.create_task(platform.deployments.run(), name="deployments"),
            asyncio.create_task(platform.pods.run(), name="pods"),
            asyncio.create_task(platform.replica_sets.run(), name="replicasets"),
            asyncio.create_task(platform.network_policies.informer.run(), name="netpols"),
        ]
        await platform.deployments.synced.wait()
        tasks += [
            asyncio.create_task(controller.run(), name="controller"),
            asyncio.create_task(leader.keep(), name="lease"),
        ]
        lost = asyncio.create_task(leader.lost.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        code = 1 if leader.lost.is_set() else 0
        lost.cancel()
        stopping.cancel()
        return code
    finally:
        await cancel_and_wait(tasks)
        await platform.close()  # leaves every Deployment running; stops its own tasks
        if leading and not leader.lost.is_set():
            await leader.release()
        await store.stop()
        await events.stop()
        await client.close()
