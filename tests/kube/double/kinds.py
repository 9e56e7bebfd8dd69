"""Resource types the double serves: the built-in table, and the shape CRDs are turned into.

A :class:`ResourceType` is everything the request path, discovery, OpenAPI and the write
rules need to know about one ``group/version/plural``. ``registry.py`` holds the live set
(built-ins plus established CRDs); ``crd.py`` builds types from CRDs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
Generation = Literal["none", "spec", "all"]
"""When ``metadata.generation`` moves: never, on ``spec`` changes, or on any non-metadata change."""


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD version."""

    name: str
    type: str
    json_path: str
    description: str = ""
    format: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status: bool = False
    """Has ``/status``: the main endpoint ignores status, ``/status`` takes only status."""
    scale: bool = False
    generation: Generation = "none"
    field_labels: tuple[str, ...] = ()
    """Field selector keys beyond metadata.name and metadata.namespace."""
    custom: bool = False
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[PrinterColumn, ...] = ()
    storage_version: str = ""
    """For custom resources: the version objects are stored in (conversion strategy None)."""
    storage_group: str | None = None
    """Set when another group holds the objects (events.k8s.io Events live with core Events)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps``: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps``: how ``Invalid`` errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of every version of a resource share one storage."""
        group = self.group if self.storage_group is None else self.storage_group
        return (group, self.plural)

    @property
    def create_only(self) -> bool:
        return self.verbs == ("create",)


def _t(
    group: str, version: str, plural: str, kind: str, namespaced: bool = True, **kw: Any
) -> ResourceType:
    return ResourceType(
        group, version, plural, kw.pop("singular", kind.lower()), kind, namespaced, **kw
    )


_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        status=True,
        field_labels=("status.phase",),
    ),
    _t(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        status=True,
        field_labels=_POD_FIELDS,
    ),
    _t("", "v1", "services", "Service", short_names=("svc",), categories=("all",), status=True),
    _t("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _t("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _t("", "v1", "secrets", "Secret", field_labels=("type",)),
    _t("", "v1", "events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS),
    _t("", "v1", "endpoints", "Endpoints", short_names=("ep",), singular="endpoints"),
    _t(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        short_names=("ev",),
        storage_group="",
        field_labels=(
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ),
    ),
    _t(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        status=True,
        scale=True,
        generation="spec",
    ),
    _t(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        categories=("all",),
        status=True,
        scale=True,
        generation="spec",
        field_labels=("status.replicas",),
    ),
    _t("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", field_labels=("addressType",)),
    _t(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        short_names=("netpol",),
        generation="spec",
    ),
    _t("coordination.k8s.io", "v1", "leases", "Lease"),
    # what the Helm chart installs beside the kinds the platform itself uses
    _t(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        categories=("all",),
        status=True,
        scale=True,
        generation="spec",
    ),
    _t("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _t("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _t("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _t("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _t(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=("all",),
        status=True,
    ),
    _t(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short_names=("pdb",),
        status=True,
        generation="spec",
    ),
    _t("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), status=True),
    _t("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
    _t(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status=True,
        generation="spec",
    ),
)
"""The built-in kinds. Events of core v1 and events.k8s.io/v1 share storage, as in Kubernetes."""

PREFERRED_VERSIONS = {t.group: t.version for t in BUILTIN_TYPES}
