"""Names and labels of the objects the operator owns (pure)."""

from __future__ import annotations

import base64

from klambda.api.routes import LATEST
from klambda.api.types import API_VERSION

MANAGED_BY = "klambda"
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
"""Selects what the operator made (Deployments, their ReplicaSets and pods, NetworkPolicies)."""
FUNCTION_LABEL = "klambda.io/function"
VERSION_LABEL = "klambda.io/version"
CONFIG_HASH_LABEL = "klambda.io/config-hash"
VPC_LABEL = "klambda.io/vpc"
"""On pods of versions with vpcConfig: their egress is their own policy's alone."""
COMPONENT_LABEL = "app.kubernetes.io/component"
GATEWAY_LABELS = {"app.kubernetes.io/name": "klambda", COMPONENT_LABEL: "gateway"}
VERSION_ANNOTATION = "klambda.io/lambda-version"
GRPC_PORT = 9000
"""A function pod's gRPC port (Status, Provision: control)."""
DATA_PORT = 9003
"""A function pod's data path (``klambda.protos.frames``): what gateways invoke it on."""


def version_slug(version: str) -> str:
    """``$LATEST`` -> ``latest``, ``3`` -> ``v3``: usable in object names and label values."""
    return "latest" if version == LATEST else f"v{version}"


def version_of_slug(slug: str) -> str:
    return LATEST if slug == "latest" else slug.removeprefix("v")


def deployment_name(function: str, version: str) -> str:
    return f"fn-{function}-{version_slug(version)}"


def config_map_name(function: str, version: str) -> str:
    return f"{deployment_name(function, version)}-shim"


def code_config_map_name(sha256: str) -> str:
    return f"klambda-code-{base64.b64decode(sha256).hex()[:20]}"


def labels(function: str, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "klambda-function",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        COMPONENT_LABEL: "function",
        FUNCTION_LABEL: function,
        VERSION_LABEL: version_slug(version),
    }


def owner_reference(kind: str, name: str, uid: str) -> dict[str, object]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
