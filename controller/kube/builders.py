"""Pure builders of the Kubernetes objects behind one function version.

``make_*`` take the desired state and return plain manifests (dicts); they do no I/O and carry
the heaviest tests, as Knative's builders do. Per version:

- ``fn-<name>-<latest|vN>`` Deployment of shim pods: one execution environment per pod, so
  replicas = concurrency the version can serve; resources from memorySize (CPU in proportion,
  1 vCPU per 1,769 MB as Lambda), hardened security context, code and shim settings mounted
  read-only, a writable /tmp of ephemeralStorage MB;
- ``fn-<name>-<latest|vN>-shim`` ConfigMap with the shim's settings;
- ``klambda-code-<sha>`` immutable ConfigMap with the code files (shared by identical code);
- ``fn-<name>-<latest|vN>`` NetworkPolicy: ingress only from the gateway, egress from
  ``spec.vpcConfig`` (all egress when absent).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from klambda.api.shim_config import ShimConfig
from klambda.api.types import FunctionSpec
from klambda.kube import names

MB_PER_VCPU = 1769
SHIM_OVERHEAD_MB = 96
CODE_DIR = "/var/task"
CONFIG_DIR = "/etc/klambda"
LOG_DIR = "/var/log/klambda"  # its own volume: logs must not eat the function's /tmp
RUN_AS = 65532
SHIM_RUNTIME = "provided.al2023"  # its image holds the shim (and python3) for image functions
RUNTIME_API_PORT = 9001
HEALTH_PORT = 9002

Manifest = dict[str, Any]


@dataclass(frozen=True)
class KubeSettings:
    """How the operator renders pods; each field maps to one Helm value."""

    images: dict[str, str] = field(
        default_factory=lambda: {
            "python3.10": "ghcr.io/klambda/runtime-python:3.10",
            "python3.11": "ghcr.io/klambda/runtime-python:3.11",
            "python3.12": "ghcr.io/klambda/runtime-python:3.12",
            "python3.13": "ghcr.io/klambda/runtime-python:3.13",
            "python3.14": "ghcr.io/klambda/runtime-python:3.14",
            "provided": "ghcr.io/klambda/runtime-provided:al2023",
            "provided.al2": "ghcr.io/klambda/runtime-provided:al2023",
            "provided.al2023": "ghcr.io/klambda/runtime-provided:al2023",
        }
    )
    """Runtime image per runtime identifier (the image holds the interpreter and the shim)."""
    image_pull_policy: str = "IfNotPresent"
    """Pull policy of runtime images."""
    gateway_labels: dict[str, str] = field(default_factory=lambda: dict(names.GATEWAY_LABELS))
    """Labels of gateway pods: the only ingress function pods accept."""
    max_replicas: int = 1000
    """Upper bound on pods per version."""


@dataclass(frozen=True)
class VersionObjects:
    config: Manifest
    deployment: Manifest
    network_policy: Manifest


def _meta(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def resources(memory_mb: int) -> Manifest:
    cpu_millis = max(50, round(memory_mb * 1000 / MB_PER_VCPU))
    return {
        "requests": {"cpu": f"{cpu_millis}m", "memory": f"{memory_mb + SHIM_OVERHEAD_MB}Mi"},
        "limits": {"memory": f"{memory_mb + SHIM_OVERHEAD_MB}Mi"},
    }


@dataclass(frozen=True)
class CodeFiles:
    """Code as a ConfigMap holds it: UTF-8 text in ``data``, anything else base64 in
    ``binaryData`` (keys may not hold '/'), and the volume items putting each file at its path."""

    data: dict[str, str]
    binary_data: dict[str, str]
    items: list[dict[str, str]]


def code_files(files: Mapping[str, bytes]) -> CodeFiles:
    data, binary, items = {}, {}, []
    for i, path in enumerate(sorted(files)):
        key = f"f{i}"
        try:
            data[key] = files[path].decode()
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(files[path]).decode()
        items.append({"key": key, "path": path})
    return CodeFiles(data, binary, items)


def config_map_bytes(files: Mapping[str, bytes]) -> int:
    """How many bytes the code takes in its ConfigMap (binary files grow by a third)."""
    stored = code_files(files)
    return sum(len(v.encode()) for v in stored.data.values()) + sum(
        len(v) for v in stored.binary_data.values()
    )


def make_code_config_map(
    namespace: str, sha256: str, files: Mapping[str, bytes], owner: dict[str, Any]
) -> Manifest:
    """Shared by every version with this code, so each is an owner and none the controller:
    the ConfigMap goes when the last of them does."""
    stored = code_files(files)
    owner = shared_owner(owner)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            **_meta(
                names.code_config_map_name(sha256),
                namespace,
                {"app.kubernetes.io/managed-by": names.MANAGED_BY},
                owner,
            ),
            "annotations": {
                "klambda.io/code-sha256": sha256,
                "klambda.io/code-items": json.dumps(stored.items),
            },
        },
        "immutable": True,
        "data": stored.data,
        **({"binaryData": stored.binary_data} if stored.binary_data else {}),
    }


def shared_owner(owner: dict[str, Any]) -> dict[str, Any]:
    return {**owner, "controller": False}


def with_owner(refs: list[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``refs`` plus ``owner`` as a shared owner; None when it is already there."""
    if any(r.get("uid") == owner.get("uid") for r in refs):
        return None
    return [*refs, shared_owner(owner)]


def pod_shim_config(config: ShimConfig) -> ShimConfig:
    """The shim's settings inside a pod: one environment, fixed port, code at /var/task."""
    external: dict[str, Any] = (
        # the image's process lives as long as its container: never reaped by the shim
        {"runtime_api_port": RUNTIME_API_PORT, "health_port": HEALTH_PORT, "idle_timeout": 1e9}
        if config.external_runtime
        else {}
    )
    return replace(
        config,
        code_dir=CODE_DIR,
        log_dir=LOG_DIR,
        log_to_stdout=True,  # kubectl logs shows START/END/REPORT and the function's output
        grpc_host="0.0.0.0",
        grpc_port=names.GRPC_PORT,
        max_environments=1,
        # all pods busy: the gateway asks for more pods, and this call waits (bounded) for
        # the pod's one environment rather than failing at once
        acquire_timeout=max(config.acquire_timeout, 10.0),
        provisioned_concurrency=1 if config.provisioned_concurrency else 0,
        prewarm=0 if config.provisioned_concurrency else 1,
        **external,
    )


def make_version_objects(
    *,
    namespace: str,
    function: str,
    version: str,
    spec: FunctionSpec,
    config: ShimConfig,
    code_config_map: str,
    code_items: list[dict[str, str]],
    owner: dict[str, Any],
    replicas: int,
    settings: KubeSettings,
) -> VersionObjects:
    labels = names.labels(function, version)
    name = names.deployment_name(function, version)
    shim = pod_shim_config(config)
    config_manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.config_map_name(function, version), namespace, labels, owner),
        "data": {"shim.json": shim.to_json()},
    }
    pod_labels = {**labels, names.CONFIG_HASH_LABEL: config.config_hash}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(
                name, namespace, {**labels, names.CONFIG_HASH_LABEL: config.config_hash}, owner
            ),
            "annotations": {names.VERSION_ANNOTATION: version},
        },
        "spec": {
            "replicas": max(0, min(replicas, settings.max_replicas)),
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {names.VERSION_ANNOTATION: version},
                },
                "spec": _pod_spec(spec, shim, code_config_map, code_items, name, settings),
            },
        },
    }
    return VersionObjects(
        config_manifest,
        deployment,
        make_network_policy(namespace, name, labels, spec, owner, settings),
    )


def _pod_spec(
    spec: FunctionSpec,
    shim: ShimConfig,
    code_config_map: str,
    code_items: list[dict[str, str]],
    name: str,
    settings: KubeSettings,
) -> Manifest:
    pod: Manifest = {
        "serviceAccountName": spec.role or "default",
        "automountServiceAccountToken": spec.role is not None,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.timeout + 15,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "shim",
                "image": settings.images[spec.runtime or SHIM_RUNTIME],
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["python3", "-m", "klambda.shim", f"{CONFIG_DIR}/shim.json"],
                "ports": [{"name": "grpc", "containerPort": names.GRPC_PORT}],
                "readinessProbe": {"tcpSocket": {"port": names.GRPC_PORT}, "periodSeconds": 1},
                "resources": resources(spec.memory_size),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
                    {"name": "shim-config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "logs", "mountPath": LOG_DIR},
                ],
            }
        ],
        "volumes": [
            {
                "name": "code",
                "configMap": {"name": code_config_map, "items": code_items, "defaultMode": 0o555},
            },
            {"name": "shim-config", "configMap": {"name": f"{name}-shim"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": f"{spec.ephemeral_storage}Mi"}},
            {"name": "logs", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if spec.is_image:
        return _image_pod(pod, spec, shim, settings)
    if spec.secret_refs:  # the shim passes these on (ShimConfig.inherited_environment)
        pod["containers"][0]["env"] = _secret_env(spec)
    return pod


def _secret_env(spec: FunctionSpec) -> list[Manifest]:
    return [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for var, ref in sorted(spec.secret_refs.items())
    ]


def _image_pod(
    pod: Manifest, spec: FunctionSpec, shim: ShimConfig, settings: KubeSettings
) -> Manifest:
    """A container image function: the shim beside the image's own runtime process.

    The function container runs the image's entry point with AWS_LAMBDA_RUNTIME_API pointing at
    the shim over the pod's loopback; its liveness probe asks the shim, which fails it once after
    giving up on an invocation (a timeout), so the kubelet restarts that container (Lambda
    replaces such an environment). The function container gets memorySize; the shim a little.
    """
    assert spec.code.image is not None
    shim_container = pod["containers"][0]
    shim_container["image"] = settings.images[SHIM_RUNTIME]
    shim_container["resources"] = {
        "requests": {"cpu": "50m", "memory": f"{SHIM_OVERHEAD_MB}Mi"},
        "limits": {"memory": f"{SHIM_OVERHEAD_MB}Mi"},
    }
    shim_container["ports"].append({"name": "health", "containerPort": shim.health_port})
    shim_container["volumeMounts"] = [
        m for m in shim_container["volumeMounts"] if m["name"] in ("shim-config", "logs")
    ] + [{"name": "shim-tmp", "mountPath": "/tmp"}]
    variables = {
        "TZ": ":UTC",
        **spec.env,
        **shim.lambda_variables(
            f"127.0.0.1:{shim.runtime_api_port}", f"[{shim.version}]image", "on-demand"
        ),
    }
    function: Manifest = {
        "name": "function",
        "image": spec.code.image,
        "imagePullPolicy": settings.image_pull_policy,
        "env": [{"name": k, "value": v} for k, v in sorted(variables.items())] + _secret_env(spec),
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": shim.health_port},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "resources": {
            "requests": {
                "cpu": resources(spec.memory_size)["requests"]["cpu"],
                "memory": f"{spec.memory_size}Mi",
            },
            "limits": {"memory": f"{spec.memory_size}Mi"},
        },
        "securityContext": shim_container["securityContext"],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    config = spec.image_config
    if config is not None:
        if config.entry_point is not None:
            function["command"] = list(config.entry_point)
        if config.command is not None:
            function["args"] = list(config.command)
        if config.working_directory is not None:
            function["workingDir"] = config.working_directory
    pod["containers"].append(function)
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "code"] + [
        {"name": "shim-tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    ]
    return pod


def make_network_policy(
    namespace: str,
    name: str,
    labels: dict[str, str],
    spec: FunctionSpec,
    owner: dict[str, Any],
    settings: KubeSettings,
) -> Manifest:
    egress = spec.vpc_config.egress if spec.vpc_config else None
    policy: Manifest = {
        "podSelector": {"matchLabels": labels},
        "policyTypes": ["Ingress"] + (["Egress"] if egress is not None else []),
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": settings.gateway_labels},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": names.GRPC_PORT}],
            }
        ],
    }
    if egress is not None:
        policy["egress"] = list(egress)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace, labels, owner),
        "spec": policy,
    }
