"""Write rules of the built-in kinds: the defaults and checks clients notice.

Namespaces get the ``kubernetes.io/metadata.name`` label and phase Active; Services a
clusterIP (immutable); Secrets have ``stringData`` folded into base64 ``data``; Pods and
Deployments get the defaults the API server adds (so a client-side three-way diff sees the
same live object); Deployments need a selector that matches the template and cannot change it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .errors import FieldError, invalid, required
from .settings import Cluster
from .strategy import Obj, Strategy


def _container_defaults(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for name in ("containers", "initContainers"):
        for container in spec.get(name) or []:
            if isinstance(container, dict):
                _container_defaults(container)


def _containers_errors(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict) or not spec.get("containers"):
        return [required(f"{path}.containers")]
    errors = []
    for i, container in enumerate(spec["containers"]):
        if not isinstance(container, dict) or not container.get("name"):
            errors.append(required(f"{path}.containers[{i}].name"))
        if isinstance(container, dict) and not container.get("image"):
            errors.append(required(f"{path}.containers[{i}].image"))
    return errors


class NamespaceStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = new["metadata"][
            "name"
        ]
        new.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if old is None:
            new["status"] = {"phase": "Active"}
        return []


class PodStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        spec = new.setdefault("spec", {})
        pod_spec_defaults(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        if old is None:
            new["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        return []

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        return _containers_errors(new.get("spec"), "spec")


class ServiceStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        spec = new.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            if old is None:
                self._allocate(spec, cluster)
            else:
                old_spec = old.get("spec") or {}
                spec.setdefault("clusterIP", old_spec.get("clusterIP"))
                spec.setdefault("clusterIPs", old_spec.get("clusterIPs"))
        new.setdefault("status", {"loadBalancer": {}})
        return []

    @staticmethod
    def _allocate(spec: dict[str, Any], cluster: Cluster) -> None:
        wanted = spec.get("clusterIP")
        if wanted in (None, ""):
            spec["clusterIP"] = cluster.service_ips.allocate()
        elif wanted != "None":
            cluster.service_ips.reserve(wanted)
        spec["clusterIPs"] = [spec["clusterIP"]]

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        if old is None:
            return []
        before, after = (
            (old.get("spec") or {}).get("clusterIP"),
            (new.get("spec") or {}).get("clusterIP"),
        )
        if before and after != before:
            return [invalid("spec.clusterIPs[0]", after, "may not change once set")]
        return []

    def on_delete(self, obj: Obj, cluster: Cluster) -> None:
        ip = (obj.get("spec") or {}).get("clusterIP")
        if ip and ip != "None":
            cluster.service_ips.release(ip)


class SecretStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        new.setdefault("type", "Opaque")
        string_data = new.pop("stringData", None) or {}
        if string_data:
            data = new.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return []

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        errors = []
        for key, value in (new.get("data") or {}).items():
            try:
                base64.b64decode(str(value), validate=True)
            except binascii.Error:
                errors.append(invalid(f"data[{key}]", value, "illegal base64 data"))
        if old is not None and old.get("type") != new.get("type"):
            errors.append(invalid("type", new.get("type"), "field is immutable"))
        return errors


class WorkloadStrategy(Strategy):
    """Deployments and ReplicaSets (apps/v1)."""

    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        spec = new.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if new.get("kind") == "Deployment":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
            )
        template = spec.setdefault("template", {})
        pod_spec_defaults(template.setdefault("spec", {}))
        template.setdefault("metadata", {})
        if old is None:
            new.setdefault("status", {})
        return []

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        spec = new.get("spec") or {}
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            return [required("spec.selector")]
        errors = _containers_errors((spec.get("template") or {}).get("spec"), "spec.template.spec")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        wanted = selector.get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            errors.append(
                invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            errors.append(invalid("spec.selector", selector, "field is immutable"))
        return errors


class NetworkPolicyStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        spec = new.setdefault("spec", {})
        spec.setdefault("podSelector", {})
        if "policyTypes" not in spec:
            spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
        return []


class EndpointSliceStrategy(Strategy):
    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        kind = new.get("addressType")
        if kind not in ("IPv4", "IPv6", "FQDN"):
            return (
                [required("addressType")]
                if kind is None
                else [
                    FieldError(
                        "NotSupported",
                        "addressType",
                        kind,
                        'supported values: "FQDN", "IPv4", "IPv6"',
                    )
                ]
            )
        return []


BUILTIN_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "namespaces"): NamespaceStrategy(),
    ("", "pods"): PodStrategy(),
    ("", "services"): ServiceStrategy(),
    ("", "secrets"): SecretStrategy(),
    ("apps", "deployments"): WorkloadStrategy(),
    ("apps", "replicasets"): WorkloadStrategy(),
    ("networking.k8s.io", "networkpolicies"): NetworkPolicyStrategy(),
    ("discovery.k8s.io", "endpointslices"): EndpointSliceStrategy(),
}
