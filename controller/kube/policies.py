"""The NetworkPolicies of each namespace's function pods: who may connect to them
(``network_policies.make_functions_policy``) and where they may connect by default
(``network_policies.make_functions_egress_policy``: not to the platform's namespace). Made when the
namespace's first version starts, and made again at once if one is deleted, since without them
function pods take connections from anywhere and reach the platform's Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from klambda.api.reasons import Reason
from klambda.api.tasks import cancel_and_wait
from klambda.controller.kube import builders, network_policies
from klambda.controller.platform import StartFailed
from klambda.kube import names
from klambda.kube.client import Conflict, KubeClient, KubeError, path_for
from klambda.kube.informer import Informer

log = logging.getLogger(__name__)

POLICIES = {
    network_policies.FUNCTIONS_POLICY: network_policies.make_functions_policy,
    network_policies.FUNCTIONS_EGRESS_POLICY: network_policies.make_functions_egress_policy,
}


class FunctionsPolicies:
    def __init__(self, client: KubeClient, settings: builders.KubeSettings) -> None:
        self.client = client
        self.settings = settings
        self._made: set[str] = set()
        """Namespaces whose policy this operator made or found."""
        self.informer = Informer(
            client,
            path_for("networking.k8s.io", "v1", "networkpolicies"),
            self._changed,
            label_selector=names.MANAGED_SELECTOR,
        )
        self._repairs: set[asyncio.Task[None]] = set()

    async def ensure(self, namespace: str) -> None:
        """The namespace's policies, made once (and found, after a restart); raises
        StartFailed when a policy of one of their names is not klambda's."""
        if namespace in self._made:
            return
        for name, build in POLICIES.items():
            await self._ensure_one(namespace, name, build(namespace, self.settings))
        self._made.add(namespace)

    async def _ensure_one(self, namespace: str, name: str, manifest: dict[str, Any]) -> None:
        path = path_for("networking.k8s.io", "v1", "networkpolicies", namespace)
        try:
            await self.client.create(path, manifest)
        except Conflict:
            existing = await self.client.get(f"{path}/{name}")
            labels = existing.get("metadata", {}).get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") != names.MANAGED_BY:
                raise StartFailed(
                    Reason.NOT_OWNED,
                    f"NetworkPolicy {name} exists and is not klambda's: refusing to change it",
                    permanent=True,
                ) from None
            if existing.get("spec") != manifest["spec"]:
                manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self.client.replace(f"{path}/{name}", manifest)

    def _changed(self, kind: str, old: Any, new: Any) -> None:
        meta = (old or {}).get("metadata", {})
        if new is not None or meta.get("name") not in POLICIES:
            return
        namespace = meta.get("namespace", "")
        if namespace in self._made:
            self._made.discard(namespace)
            task = asyncio.get_running_loop().create_task(self._repair(namespace))
            self._repairs.add(task)
            task.add_done_callback(self._repairs.discard)

    async def _repair(self, namespace: str) -> None:
        where = f"{namespace}'s function policies"
        try:
            await self.ensure(namespace)
        except (KubeError, StartFailed) as e:  # the namespace itself is going, most likely
            log.warning(
                "A NetworkPolicy of %s was deleted and could not be made again: %s", where, e
            )
            return
        log.warning("A NetworkPolicy of %s was deleted: made again", where)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._repairs))
