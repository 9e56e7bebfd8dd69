"""Attack: a pod labelled like a gateway, in a tenant's namespace, dials a function pod; and
function code dials the platform's Redis.

Evaluated with Kubernetes' NetworkPolicy rules (isolation in a direction when any policy of
that type selects the pod; policies add up; a peer with both selectors must match both) over
what the operator writes. ipBlock peers are taken to match pod addresses too, as some network
plugins do, which is why the cluster's pod ranges are left out of the "outside world".
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from klambda.api.types import FunctionSpec, VpcConfig
from klambda.controller.kube.builders import KubeSettings
from klambda.controller.kube.network_policies import (
    make_egress_policy,
    make_functions_egress_policy,
    make_functions_policy,
)
from klambda.kube import names

PLATFORM = "klambda-system"


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _in_block(block: dict[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    net = ipaddress.ip_network(block["cidr"])
    if ip.version != net.version or ip not in net:
        return False
    return not any(ip in ipaddress.ip_network(c) for c in block.get("except", []))


Peer = tuple[str | None, dict[str, str], str]
"""A pod (namespace, labels, address), or an address outside the cluster (None, {}, address)."""


def reaches(policies: list[dict[str, Any]], source: Peer, target: Peer, port: int) -> bool:
    """Whether ``source`` (a pod) may open ``port`` at ``target``, by egress policies."""
    source_ns, source_labels, _ = source
    target_ns, target_labels, address = target
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == source_ns
        and _matches(p["spec"]["podSelector"], source_labels)
        and "Egress" in p["spec"].get("policyTypes", [])
    ]
    if not selecting:
        return True  # not isolated for egress
    for policy in selecting:
        for rule in policy["spec"].get("egress") or []:
            ports = [p["port"] for p in rule.get("ports") or []]
            if ports and port not in ports:
                continue
            for peer in rule.get("to") or []:
                if "ipBlock" in peer:
                    if _in_block(peer["ipBlock"], address):
                        return True
                    continue
                if target_ns is None:
                    continue  # selectors match pods only
                if "namespaceSelector" in peer:
                    ns_labels = {"kubernetes.io/metadata.name": target_ns}
                    ns_ok = _matches(peer["namespaceSelector"], ns_labels)
                else:
                    ns_ok = target_ns == source_ns
                if ns_ok and _matches(peer.get("podSelector"), target_labels):
                    return True
    return False


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
        ((PLATFORM, names.GATEWAY_LABELS), names.DATA_PORT, True),  # the gateway
        (("team-b", names.GATEWAY_LABELS), names.DATA_PORT, False),  # a look-alike elsewhere
        (("team-a", names.GATEWAY_LABELS), names.DATA_PORT, False),  # ... even in its namespace
        ((PLATFORM, {"app": "other"}), names.DATA_PORT, False),  # another platform pod
        ((PLATFORM, names.GATEWAY_LABELS), 9001, False),  # the Runtime API is the pod's own
        ((PLATFORM, names.GATEWAY_LABELS), names.GRPC_PORT, False),  # control: nobody's on Kube
        (("team-a", names.labels("other", "$LATEST")), names.DATA_PORT, False),  # a neighbour
    ],
)
def test_only_the_platforms_gateways_reach_function_pods(
    source: tuple[str, dict[str, str]], port: int, allowed: bool
) -> None:
    assert admits([POLICY], FUNCTION_POD, source, port) is allowed


PODS = "10.244.0.0/16"
SETTINGS = KubeSettings(platform_namespace=PLATFORM, pod_cidrs=(PODS,))
EGRESS = make_functions_egress_policy("team-a", SETTINGS)
CODE = ("team-a", names.labels("fn", "$LATEST"), "10.244.1.10")
REDIS = (PLATFORM, {"app.kubernetes.io/name": "redis"}, "10.244.2.20")
GATEWAY = (PLATFORM, names.GATEWAY_LABELS, "10.244.2.30")


@pytest.mark.parametrize(
    ("target", "port", "allowed"),
    [
        (REDIS, 6379, False),  # the platform's Redis: async events, every tenant's queues
        (GATEWAY, 9000, False),  # other gateway ports
        ((PLATFORM, {"app": "klambda-operator"}, "10.244.2.40"), 8080, False),
        (GATEWAY, 8080, True),  # the Lambda API (SigV4 applies), as functions call it
        (("kube-system", {"k8s-app": "kube-dns"}, "10.244.3.2"), 53, True),  # DNS
        (("team-b", {"app": "db"}, "10.244.4.4"), 5432, True),  # other namespaces: theirs to say
        (("team-a", {"app": "cache"}, "10.244.1.11"), 6379, True),  # its own namespace
        ((None, {}, "93.184.216.34"), 443, True),  # the outside world
        ((None, {}, "2606:2800:220:1::1"), 443, True),
    ],
)
def test_function_code_reaches_everything_but_the_platform(
    target: Peer, port: int, allowed: bool
) -> None:
    assert reaches([POLICY, EGRESS], CODE, target, port) is allowed


def test_without_the_pod_ranges_an_address_rule_would_let_platform_pods_in() -> None:
    loose = make_functions_egress_policy("team-a", KubeSettings(platform_namespace=PLATFORM))
    assert reaches([loose], CODE, REDIS, 6379)  # why the operator takes --pod-cidr


def test_a_vpc_config_alone_decides_its_pods_egress() -> None:
    """Policies add up: the namespace's default must not widen a vpcConfig allow-list."""
    spec = FunctionSpec(
        code={"inline": {"app.py": "x"}},  # type: ignore[arg-type]
        runtime="python3.12",
        handler="app.handler",
        vpc_config=VpcConfig(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
    )
    labels = names.labels("fn", "$LATEST")
    meta = {"name": "fn-fn-latest", "namespace": "team-a", "labels": labels}
    vpc = make_egress_policy("team-a", meta, spec, SETTINGS)
    assert vpc is not None
    pod = ("team-a", {**labels, names.VPC_LABEL: "true"}, "10.244.1.12")
    assert not reaches([EGRESS, vpc], pod, (None, {}, "93.184.216.34"), 443)
    assert reaches([EGRESS, vpc], pod, (None, {}, "10.1.2.3"), 443)


PLATFORM_ONLY = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PLATFORM}}}


@pytest.mark.parametrize(
    ("rule", "others"),
    [
        ({"to": [{"namespaceSelector": {}}]}, True),  # "every namespace"
        ({"to": [PLATFORM_ONLY]}, False),
        ({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}, False),  # takes in the pod range
        ({"ports": [{"port": 6379}]}, True),  # no peers: any destination
    ],
)
def test_a_vpc_config_cannot_open_the_platform(rule: dict[str, Any], others: bool) -> None:
    """A tenant writes its vpcConfig; what it writes is confined like the default egress."""
    spec = FunctionSpec(
        code={"inline": {"app.py": "x"}},  # type: ignore[arg-type]
        runtime="python3.12",
        handler="app.handler",
        vpc_config=VpcConfig(egress=[rule]),
    )
    labels = names.labels("fn", "$LATEST")
    meta = {"name": "fn-fn-latest", "namespace": "team-a", "labels": labels}
    vpc = make_egress_policy("team-a", meta, spec, SETTINGS)
    assert vpc is not None
    pod = ("team-a", {**labels, names.VPC_LABEL: "true"}, "10.244.1.12")
    assert not reaches([EGRESS, vpc], pod, REDIS, 6379)
    assert reaches([EGRESS, vpc], pod, ("team-b", {}, "10.244.4.4"), 6379) is others
