"""Attack: a pod labelled like a gateway, in a tenant's namespace, dials a function pod.

Evaluated with Kubernetes' NetworkPolicy rules (ingress isolation when any policy selects the
pod; a peer with both selectors must match both) over what the operator writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from klambda.controller.kube.builders import KubeSettings, make_functions_policy
from klambda.kube import names

PLATFORM = "klambda-system"


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    expressions = selector.get("matchExpressions") or []
    assert not expressions, "this evaluator knows matchLabels only"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def admits(
    policies: list[dict[str, Any]],
    target: tuple[str, dict[str, str]],
    source: tuple[str, dict[str, str]],
    port: int,
) -> bool:
    """Whether ``source`` (namespace, labels) may open ``port`` on ``target``."""
    target_ns, target_labels = target
    source_ns, source_labels = source
    namespace_labels = {"kubernetes.io/metadata.name": source_ns}
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target_ns
        and _matches(p["spec"]["podSelector"], target_labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True  # not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = [p["port"] for p in rule.get("ports") or []]
            if ports and port not in ports:
                continue
            for peer in rule.get("from") or []:
                if "namespaceSelector" in peer:
                    ns_ok = _matches(peer["namespaceSelector"], namespace_labels)
                else:
                    ns_ok = source_ns == target_ns
                if ns_ok and _matches(peer.get("podSelector"), source_labels):
                    return True
    return False


FUNCTION_POD = ("team-a", names.labels("fn", "$LATEST"))
POLICY = make_functions_policy("team-a", KubeSettings(platform_namespace=PLATFORM))


@pytest.mark.parametrize(
    ("source", "port", "allowed"),
    [
        ((PLATFORM, names.GATEWAY_LABELS), names.GRPC_PORT, True),  # the gateway
        (("team-b", names.GATEWAY_LABELS), names.GRPC_PORT, False),  # a look-alike elsewhere
        (("team-a", names.GATEWAY_LABELS), names.GRPC_PORT, False),  # ... even in its namespace
        ((PLATFORM, {"app": "other"}), names.GRPC_PORT, False),  # another platform pod
        ((PLATFORM, names.GATEWAY_LABELS), 9001, False),  # the Runtime API is the pod's own
        (("team-a", names.labels("other", "$LATEST")), names.GRPC_PORT, False),  # a neighbour
    ],
)
def test_only_the_platforms_gateways_reach_function_pods(
    source: tuple[str, dict[str, str]], port: int, allowed: bool
) -> None:
    assert admits([POLICY], FUNCTION_POD, source, port) is allowed
