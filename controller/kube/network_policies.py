"""The NetworkPolicies klambda writes for function pods (pure): who may connect to them, where
they may connect by default, and a version's own vpcConfig allow-list, confined so that no
policy a tenant writes opens the platform's namespace (policies only add up).

- ``klambda-functions`` (per namespace): ingress only from gateway pods of the platform's
  namespace, on the shim's port.
- ``klambda-functions-egress`` (per namespace): pods without vpcConfig reach every other
  namespace, DNS, the outside world but the cluster's pod ranges, and in the platform's
  namespace only the gateways' HTTP port.
- ``fn-<name>-<latest|vN>`` (per version with vpcConfig.egress): its rules, confined alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from klambda.api.types import FunctionSpec
from klambda.kube import names

if TYPE_CHECKING:
    from klambda.controller.kube.builders import KubeSettings

Manifest = dict[str, Any]
FUNCTIONS_POLICY = "klambda-functions"
FUNCTIONS_EGRESS_POLICY = "klambda-functions-egress"


def make_functions_policy(namespace: str, settings: KubeSettings) -> Manifest:
    """One NetworkPolicy for every function pod of a namespace: they take connections only
    from gateway pods of the platform's namespace, on the shim's port (a tenant can label a pod
    like a gateway, but not put it in the platform's namespace). Policies add up: a version
    with vpcConfig also has its own egress policy. Shims check a caller token as well, so a
    cluster that does not enforce NetworkPolicy is not open either."""
    return _namespace_policy(
        FUNCTIONS_POLICY,
        namespace,
        {"matchLabels": dict(FUNCTION_PODS)},
        {
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [_gateways(settings)],
                    "ports": [{"protocol": "TCP", "port": names.DATA_PORT}],
                }
            ],
        },
    )


def make_functions_egress_policy(namespace: str, settings: KubeSettings) -> Manifest:
    """The default egress of a namespace's function pods (those without vpcConfig, whose own
    policy alone decides): anywhere, DNS and other namespaces included, except the platform's
    namespace, where only the gateways' HTTP port is open. Redis, the operator and whatever
    else runs there stay out of reach of function code."""
    without_vpc = {
        "matchLabels": dict(FUNCTION_PODS),
        "matchExpressions": [{"key": names.VPC_LABEL, "operator": "DoesNotExist"}],
    }
    return _namespace_policy(
        FUNCTIONS_EGRESS_POLICY,
        namespace,
        without_vpc,
        {
            "policyTypes": ["Egress"],
            "egress": [
                {"to": _anywhere_but_the_platform(settings)},
                {
                    "to": [_gateways(settings)],
                    "ports": [{"protocol": "TCP", "port": settings.gateway_port}],
                },
            ],
        },
    )


FUNCTION_PODS = {
    "app.kubernetes.io/managed-by": names.MANAGED_BY,
    names.COMPONENT_LABEL: "function",
}


def _namespace_policy(name: str, namespace: str, pods: Manifest, rules: Manifest) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": names.MANAGED_BY},
        },
        "spec": {"podSelector": pods, **rules},
    }


def _gateways(settings: KubeSettings) -> Manifest:
    """The peer: gateway pods of the platform's namespace (a pod labelled like a gateway
    elsewhere is not one)."""
    return {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": settings.platform_namespace}
        },
        "podSelector": {"matchLabels": settings.gateway_labels},
    }


def _anywhere_but_the_platform(settings: KubeSettings) -> list[Manifest]:
    """Peers: every namespace but the platform's, and every address outside the pod ranges."""
    outside: Manifest = {"cidr": "0.0.0.0/0"}
    v4 = [c for c in settings.pod_cidrs if ":" not in c]
    if v4:
        outside["except"] = v4
    outside6: Manifest = {"cidr": "::/0"}
    v6 = [c for c in settings.pod_cidrs if ":" in c]
    if v6:
        outside6["except"] = v6
    return [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": [settings.platform_namespace],
                    }
                ]
            }
        },
        {"ipBlock": outside},
        {"ipBlock": outside6},
    ]


def make_egress_policy(
    namespace: str, metadata: Manifest, spec: FunctionSpec, settings: KubeSettings
) -> Manifest | None:
    """A version's egress allow-list (vpcConfig.egress), or None when egress is open. Its
    rules are confined as the namespace's default is: a namespace selector never takes in the
    platform's namespace, an address block never the cluster's pod ranges (policies only add
    up, so the tenant's rules must not open what the default keeps shut)."""
    egress = spec.vpc_config.egress if spec.vpc_config else None
    if egress is None:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": metadata["labels"]},
            "policyTypes": ["Egress"],
            "egress": [_confined(rule, settings) for rule in egress],
        },
    }


def _confined(rule: Any, settings: KubeSettings) -> Any:
    if not isinstance(rule, dict):
        return rule  # the API server refuses it
    if not rule.get("to"):  # any destination: as the default, anywhere but the platform
        return {**rule, "to": _anywhere_but_the_platform(settings)}
    peers = []
    for peer in rule["to"]:
        peer = dict(peer) if isinstance(peer, dict) else peer
        if isinstance(peer, dict) and isinstance(peer.get("namespaceSelector"), dict):
            selector = dict(peer["namespaceSelector"])
            selector["matchExpressions"] = [
                *selector.get("matchExpressions", []),
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": [settings.platform_namespace],
                },
            ]
            peer["namespaceSelector"] = selector
        elif isinstance(peer, dict) and isinstance(peer.get("ipBlock"), dict):
            block = dict(peer["ipBlock"])
            cidr = str(block.get("cidr", ""))
            extra = [c for c in settings.pod_cidrs if (":" in c) == (":" in cidr)]
            if extra:
                block["except"] = [*block.get("except", []), *extra]
            peer["ipBlock"] = block
        peers.append(peer)
    return {**rule, "to": peers}
