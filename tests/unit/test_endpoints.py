"""Attack: a look-alike pod (the function's labels, Ready, in its namespace) must never receive
the version's traffic; only pods whose ReplicaSet the version's Deployment controls do."""

from __future__ import annotations

from typing import Any

from klambda.kube import names
from klambda.kube.workloads import ready_endpoints, version_replica_sets

KEY = ("team-a", "fn", "$LATEST")


def owned(kind: str, name: str, uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": True}]


def pod(ip: str, owners: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"pod-{ip}",
            "namespace": "team-a",
            "labels": names.labels("fn", "$LATEST"),
            **({"ownerReferences": owners} if owners is not None else {}),
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


REPLICA_SETS = [
    {  # the Deployment controller's
        "metadata": {
            "namespace": "team-a",
            "uid": "rs-real",
            "ownerReferences": owned("Deployment", "fn-fn-latest", "d-1"),
        }
    },
    {  # someone's own ReplicaSet, labelled alike
        "metadata": {
            "namespace": "team-a",
            "uid": "rs-fake",
            "ownerReferences": owned("Deployment", "imposter", "d-2"),
        }
    },
    {  # the right name, another namespace
        "metadata": {
            "namespace": "team-b",
            "uid": "rs-other-ns",
            "ownerReferences": owned("Deployment", "fn-fn-latest", "d-3"),
        }
    },
]


def test_only_pods_of_the_versions_replica_sets_serve_it() -> None:
    owners = version_replica_sets(REPLICA_SETS, KEY)
    assert owners == {"rs-real"}
    pods = [
        pod("10.0.0.1", owned("ReplicaSet", "fn-fn-latest-abc", "rs-real")),  # the real one
        pod("10.0.0.2", None),  # a bare pod with copied labels
        pod("10.0.0.3", owned("ReplicaSet", "imposter-x", "rs-fake")),
        pod("10.0.0.4", owned("Deployment", "fn-fn-latest", "d-1")),  # not how pods are owned
        pod("10.0.0.5", owned("ReplicaSet", "x", "rs-other-ns")),
        pod("10.0.0.6", [{**owned("ReplicaSet", "fn", "rs-real")[0], "controller": False}]),
    ]
    assert ready_endpoints(pods, KEY, owners) == (f"10.0.0.1:{names.DATA_PORT}",)
