"""Pure builders of the Kubernetes objects behind one function version.

``make_*`` take the desired state and return plain manifests (dicts); they do no I/O and carry
the heaviest tests, as Knative's builders do. Per version:

- ``fn-<name>-<latest|vN>`` Deployment of shim pods: one execution environment per pod, so
  replicas = concurrency the version can serve; resources from memorySize (CPU in proportion,
  1 vCPU per 1,769 MB as Lambda), hardened security context, code and shim settings mounted
  read-only, a writable /tmp of ephemeralStorage MB;
- the shim's settings in the pod template (``KLAMBDA_SHIM_CONFIG``), text code up to 32 KiB
  in its annotations, larger code in an immutable ``klambda-code-<sha>`` ConfigMap
  (``code_objects``);
- ``fn-<name>-<latest|vN>`` NetworkPolicy from ``spec.vpcConfig`` (``network_policies``, with
  the namespace's own policies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from klambda.api import defaults
from klambda.api.shim_config import ShimConfig
from klambda.api.types import FunctionSpec
from klambda.controller.kube.code_objects import code_volume
from klambda.controller.kube.network_policies import make_egress_policy
from klambda.kube import names

MB_PER_VCPU = 1769
SHIM_OVERHEAD_MB = 96
CODE_DIR = "/var/task"
SHIM_CONFIG_ENV = "KLAMBDA_SHIM_CONFIG"
"""The shim container's variable holding its settings (JSON): part of the pod template, so a
change of settings rolls the pods, and no object per version beyond its Deployment."""
"""The NetworkPolicy of every function pod in a namespace: ingress from gateways only."""
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
    platform_namespace: str = defaults.NAMESPACE
    """The namespace the gateways run in: pods labelled like a gateway elsewhere are refused."""
    gateway_port: int = defaults.GATEWAY_PORT
    """The gateways' HTTP port: the one place in the platform's namespace function code may
    reach (to call the Lambda API, as functions do)."""
    pod_cidrs: tuple[str, ...] = ()
    """The cluster's pod address ranges, left out of function pods' "outside world" egress: some
    network plugins match pod addresses with ipBlock rules, which would let platform pods in."""
    max_replicas: int = 1000
    """Upper bound on pods per version."""


@dataclass(frozen=True)
class VersionObjects:
    deployment: Manifest
    egress_policy: Manifest | None
    """The version's own NetworkPolicy, when its vpcConfig restricts egress; ingress is the
    namespace's ``make_functions_policy``."""


def _meta(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def resources(memory_mb: int) -> Manifest:
    cpu_millis = max(50, round(memory_mb * 1000 / MB_PER_VCPU))
    return {
        "requests": {"cpu": f"{cpu_millis}m", "memory": f"{memory_mb + SHIM_OVERHEAD_MB}Mi"},
        "limits": {"memory": f"{memory_mb + SHIM_OVERHEAD_MB}Mi"},
    }


def pod_shim_config(config: ShimConfig) -> ShimConfig:
    """The shim's settings inside a pod: one environment, fixed port, code at /var/task."""
    external: dict[str, Any] = (
        # the image's process lives as long as its container: never reaped by the shim
        {"runtime_api_port": RUNTIME_API_PORT, "idle_timeout": 1e9}
        if config.external_runtime
        else {}
    )
    return replace(
        config,
        code_dir=CODE_DIR,
        log_dir=LOG_DIR,
        log_to_stdout=True,  # kubectl logs shows START/END/REPORT and the function's output
        grpc_host="0.0.0.0",
        health_port=HEALTH_PORT,  # readiness (/ready); image functions' liveness (/healthz)
        grpc_port=names.GRPC_PORT,
        data_port=names.DATA_PORT,
        max_environments=1,
        # the pod's one environment busy: the call waits a moment, then the gateway tries
        # another pod (busy pods make the Deployment grow; GatewaySettings.busy_wait)
        acquire_timeout=config.acquire_timeout,
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
    code_annotations: Mapping[str, str] | None = None,
) -> VersionObjects:
    """``code_annotations``: the code itself (``annotated_code``), carried by the pod template
    instead of ``code_config_map``."""
    labels = names.labels(function, version)
    name = names.deployment_name(function, version)
    shim = pod_shim_config(config)
    pod_labels = {**labels, names.CONFIG_HASH_LABEL: config.config_hash}
    if spec.vpc_config is not None:  # not under the namespace's default egress
        pod_labels[names.VPC_LABEL] = "true"
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
                    "annotations": {names.VERSION_ANNOTATION: version, **(code_annotations or {})},
                },
                "spec": _pod_spec(
                    spec,
                    shim,
                    code_volume(code_config_map, code_items, code_annotations is not None),
                    settings,
                ),
            },
        },
    }
    egress = make_egress_policy(namespace, _meta(name, namespace, labels, owner), spec, settings)
    return VersionObjects(deployment, egress)


def _pod_spec(
    spec: FunctionSpec, shim: ShimConfig, code: Manifest, settings: KubeSettings
) -> Manifest:
    settings_env = {"name": SHIM_CONFIG_ENV, "value": shim.to_json(indent=None)}
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
                "command": ["python3", "-m", "klambda.shim", "--config-env", SHIM_CONFIG_ENV],
                "env": [settings_env],
                "ports": [
                    {"name": "grpc", "containerPort": names.GRPC_PORT},
                    {"name": "data", "containerPort": names.DATA_PORT},
                    {"name": "health", "containerPort": HEALTH_PORT},
                ],
                # not ready while the shim cannot start an environment, as well as until it
                # serves: a pod that can only fail leaves the Service
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": HEALTH_PORT},
                    "periodSeconds": 1,
                },
                "resources": resources(spec.memory_size),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "logs", "mountPath": LOG_DIR},
                ],
            }
        ],
        "volumes": [
            code,
            {"name": "tmp", "emptyDir": {"sizeLimit": f"{spec.ephemeral_storage}Mi"}},
            {"name": "logs", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if spec.is_image:
        return _image_pod(pod, spec, shim, settings)
    if spec.secret_refs:  # the shim passes these on (ShimConfig.inherited_environment)
        pod["containers"][0]["env"] += _secret_env(spec)
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
    shim_container["volumeMounts"] = [
        m for m in shim_container["volumeMounts"] if m["name"] == "logs"
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
