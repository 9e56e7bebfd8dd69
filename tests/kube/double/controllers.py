"""The controllers a real cluster runs beside the API server, simulated: asynchronous, like
kube-controller-manager and apiextensions' own controllers.

- CRD establishing: sets NamesAccepted and Established, adds the cleanup finalizer and serves
  the kinds (``registry.py``); on deletion removes the custom resources first.
- Namespace termination: deletes everything in a terminating namespace, then the namespace.
- Garbage collector: deletes dependents whose owners are all gone (Background), strips owner
  references for ``orphan``, deletes dependents before owners for ``foregroundDeletion``.
- Rollouts (only with ``Settings.simulate_rollouts``): Deployment status as if every rollout
  completed at once.

They run in one task (:meth:`Controllers.run`) woken by ``Cluster.changed``, after
``Settings.controller_delay``: deletions never cascade within the request.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .crd import crd_types
from .deletes import mark_deleted, remove
from .kinds import ResourceType
from .meta import rfc3339
from .params import Query
from .routing import Target
from .settings import Cluster
from .store import Key
from .writes import create

Obj = dict[str, Any]
CRD_KEY: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES: Key = ("", "namespaces")
DEPLOYMENTS: Key = ("apps", "deployments")
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def run(self) -> None:
        changed = self.cluster.changed
        while True:
            await changed.wait()
            changed.clear()
            await asyncio.sleep(self.cluster.settings.controller_delay)
            self.reconcile()

    def reconcile(self) -> None:
        """One pass of every controller (each pass's writes wake the next one)."""
        self._crds()
        self._namespaces()
        self._service_accounts()
        self._garbage_collect()
        if self.cluster.settings.simulate_rollouts:
            self._rollouts()

    # helpers -----------------------------------------------------------------------------

    def _rtype(self, key: Key) -> ResourceType | None:
        return self.cluster.registry.for_storage(key)

    def _save(self, key: Key, obj: Obj) -> None:
        """Write ``obj``; a being-deleted object without finalizers is deleted instead."""
        rtype = self._rtype(key)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and rtype is not None:
            remove(self.cluster, rtype, obj)
        else:
            self.cluster.store.put(key, obj, "MODIFIED")
            self.cluster.changed.set()

    def _drop_finalizer(self, key: Key, obj: Obj, finalizer: str) -> None:
        obj["metadata"]["finalizers"] = [
            f for f in obj["metadata"].get("finalizers") or [] if f != finalizer
        ]
        if not obj["metadata"]["finalizers"]:
            del obj["metadata"]["finalizers"]
        self._save(key, obj)

    def _delete(self, key: Key, obj: Obj, policy: str = "Background") -> None:
        rtype = self._rtype(key)
        if rtype is not None and not obj["metadata"].get("deletionTimestamp"):
            mark_deleted(self.cluster, rtype, obj, policy)

    # CRDs --------------------------------------------------------------------------------

    def _crds(self) -> None:
        store, registry = self.cluster.store, self.cluster.registry
        for crd in store.items(CRD_KEY):
            name = crd["metadata"]["name"]
            if crd["metadata"].get("deletionTimestamp"):
                remaining = 0
                for rtype in registry.crd_types(name)[:1]:
                    for obj in store.items(rtype.storage_key):
                        remaining += 1
                        self._delete(rtype.storage_key, obj)
                if not remaining and CRD_FINALIZER in (crd["metadata"].get("finalizers") or []):
                    registry.remove_crd(name)
                    self._drop_finalizer(CRD_KEY, crd, CRD_FINALIZER)
                continue
            registry.set_crd(name, crd_types(crd))
            if not _established(crd):
                self._establish(crd)

    def _establish(self, crd: Obj) -> None:
        now = rfc3339(self.cluster.clock())
        names = dict((crd.get("spec") or {}).get("names") or {})
        status = crd.setdefault("status", {})
        status["acceptedNames"] = names
        status["conditions"] = [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ]
        finalizers = crd["metadata"].setdefault("finalizers", [])
        if CRD_FINALIZER not in finalizers:
            finalizers.append(CRD_FINALIZER)
        self.cluster.store.put(CRD_KEY, crd, "MODIFIED")

    # namespaces --------------------------------------------------------------------------

    def _namespaces(self) -> None:
        store = self.cluster.store
        for namespace in store.items(NAMESPACES):
            if not namespace["metadata"].get("deletionTimestamp"):
                continue
            name, remaining = namespace["metadata"]["name"], 0
            for key in store.resource_keys():
                rtype = self._rtype(key)
                if key == NAMESPACES or rtype is None or not rtype.namespaced:
                    continue
                for obj in store.items(key, name):
                    remaining += 1
                    self._delete(key, obj)
            if not remaining:
                remove(self.cluster, self._rtype(NAMESPACES) or _never(), namespace)

    def _service_accounts(self) -> None:
        """Every active namespace has a ``default`` ServiceAccount."""
        store = self.cluster.store
        accounts = ("", "serviceaccounts")
        rtype = self._rtype(accounts)
        for namespace in store.items(NAMESPACES):
            name = namespace["metadata"]["name"]
            if (
                namespace["metadata"].get("deletionTimestamp")
                or store.get(accounts, name, "default")
                or rtype is None
            ):
                continue
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default"},
            }
            create(self.cluster, Target(rtype, name), account, Query())

    # garbage collector -------------------------------------------------------------------

    def _garbage_collect(self) -> None:
        objects = list(self.cluster.store.all_objects())
        by_uid = {obj["metadata"]["uid"]: obj for _, obj in objects}
        dependents: dict[str, list[tuple[Key, Obj]]] = {}
        for key, obj in objects:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((key, obj))
        for key, obj in objects:
            finalizers = obj["metadata"].get("finalizers") or []
            if not obj["metadata"].get("deletionTimestamp"):
                continue
            uid = obj["metadata"]["uid"]
            if "orphan" in finalizers:
                self._orphan(uid, dependents.get(uid, []))
                self._drop_finalizer(
                    key, self.cluster.store.get(key, *_where(obj)) or obj, "orphan"
                )
            elif "foregroundDeletion" in finalizers:
                self._foreground(key, obj, dependents.get(uid, []))
        for key, obj in objects:
            self._collect_if_orphaned(key, obj, by_uid)

    def _orphan(self, owner_uid: str, dependents: list[tuple[Key, Obj]]) -> None:
        for key, dependent in dependents:
            fresh = self.cluster.store.get(key, *_where(dependent))
            if fresh is None:
                continue
            refs = [
                r
                for r in fresh["metadata"].get("ownerReferences") or []
                if r.get("uid") != owner_uid
            ]
            fresh["metadata"]["ownerReferences"] = refs
            if not refs:
                del fresh["metadata"]["ownerReferences"]
            self._save(key, fresh)

    def _foreground(self, key: Key, owner: Obj, dependents: list[tuple[Key, Obj]]) -> None:
        uid = owner["metadata"]["uid"]
        blocking = 0
        for dep_key, dependent in dependents:
            fresh = self.cluster.store.get(dep_key, *_where(dependent))
            if fresh is None:
                continue
            ref = next(
                r for r in fresh["metadata"].get("ownerReferences") or [] if r.get("uid") == uid
            )
            blocking += bool(ref.get("blockOwnerDeletion"))
            self._delete(
                dep_key, fresh, "Foreground" if ref.get("blockOwnerDeletion") else "Background"
            )
        if not blocking:
            fresh_owner = self.cluster.store.get(key, *_where(owner))
            if fresh_owner is not None:
                self._drop_finalizer(key, fresh_owner, "foregroundDeletion")

    def _collect_if_orphaned(self, key: Key, obj: Obj, by_uid: dict[str, Obj]) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs or obj["metadata"].get("deletionTimestamp"):
            return
        namespace = obj["metadata"].get("namespace", "")
        alive = [r for r in refs if _owner_alive(r, by_uid, namespace)]
        if len(alive) == len(refs):
            return
        fresh = self.cluster.store.get(key, *_where(obj))
        if fresh is None:
            return
        if not alive:
            self._delete(key, fresh)
        else:
            fresh["metadata"]["ownerReferences"] = alive
            self._save(key, fresh)

    # rollouts ----------------------------------------------------------------------------

    def _rollouts(self) -> None:
        now = rfc3339(self.cluster.clock())
        for deployment in self.cluster.store.items(DEPLOYMENTS):
            meta, status = deployment["metadata"], deployment.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("observedGeneration") == meta.get(
                "generation"
            ):
                continue
            replicas = (deployment.get("spec") or {}).get("replicas", 1)
            deployment["status"] = {
                "observedGeneration": meta.get("generation"),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    _condition("Available", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.", now),
                    _condition("Progressing", "NewReplicaSetAvailable",
                               f'ReplicaSet "{meta["name"]}" has successfully progressed.', now),
                ],
            }  # fmt: skip
            self.cluster.store.put(DEPLOYMENTS, deployment, "MODIFIED")


def _condition(kind: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}  # fmt: skip


def _where(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _owner_alive(ref: dict[str, Any], by_uid: dict[str, Obj], namespace: str) -> bool:
    owner = by_uid.get(ref.get("uid", ""))
    if owner is None:
        return False
    owner_ns = owner["metadata"].get("namespace", "")
    return not owner_ns or owner_ns == namespace


def _established(crd: Obj) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )


def _never() -> ResourceType:
    raise AssertionError("namespaces are always registered")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
