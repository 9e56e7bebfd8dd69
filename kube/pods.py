"""The watches that say which pods serve a version: klambda's pods and the ReplicaSets that
made them (``workloads.ready_endpoints`` trusts a pod only through its ReplicaSet). The
operator and every gateway keep both."""

from __future__ import annotations

from klambda.kube.client import KubeClient
from klambda.kube.informer import Informer, OnChange
from klambda.kube.names import MANAGED_SELECTOR as MANAGED
from klambda.kube.workloads import (
    VersionKey,
    pods_path,
    ready_endpoints,
    replicasets_path,
    version_key_of,
    version_replica_sets,
)


class VersionPods:
    def __init__(self, client: KubeClient, on_change: OnChange) -> None:
        self.pods = Informer(
            client, pods_path(), on_change, label_selector=MANAGED, index=version_key_of
        )
        self.replica_sets = Informer(
            client, replicasets_path(), on_change, label_selector=MANAGED, index=version_key_of
        )

    @property
    def informers(self) -> tuple[Informer, Informer]:
        return self.pods, self.replica_sets

    def endpoints(self, key: VersionKey) -> tuple[str, ...]:
        """gRPC addresses of the version's Ready pods that its Deployment made."""
        owners = version_replica_sets(self.replica_sets.indexed(key), key)
        return ready_endpoints(self.pods.indexed(key), key, owners)
