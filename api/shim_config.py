"""The shim's settings: the contract between a platform and the shims it starts (read once)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from klambda.api import defaults


@dataclass(frozen=True)
class ShimConfig:
    """What one shim runs and how. The platform writes it; the shim never reads the env for it."""

    function_name: str
    """Lambda function name (AWS_LAMBDA_FUNCTION_NAME)."""
    version: str
    """Version this shim runs: $LATEST or a number (AWS_LAMBDA_FUNCTION_VERSION)."""
    runtime: str
    """Runtime identifier, e.g. python3.12 or provided."""
    handler: str
    """Handler string; argv[1] of awslambdaric, _HANDLER for bootstrap runtimes."""
    code_dir: str
    """Directory holding the function's code (LAMBDA_TASK_ROOT)."""
    function_arn: str
    """Unqualified ARN of the function."""
    log_dir: str
    """Where environment log streams are written, one file per environment."""
    memory_size: int = 128
    """MB; the environment's memory limit and AWS_LAMBDA_FUNCTION_MEMORY_SIZE."""
    timeout: float = 3.0
    """Seconds an invocation may run before the environment is killed."""
    environment: dict[str, str] = field(default_factory=dict)
    """User environment variables."""
    inherited_environment: list[str] = field(default_factory=list)
    """Variables the shim passes on from its own environment (Secret values: the platform puts
    them there, never in this file)."""
    region: str = defaults.REGION
    """AWS_REGION seen by functions."""
    namespace: str = defaults.NAMESPACE
    """Kubernetes namespace (the account) of the function."""
    config_hash: str = ""
    """Hash of the configuration this shim runs; reported by Status for roll-outs."""
    grpc_host: str = "127.0.0.1"
    """Address the gRPC server binds."""
    grpc_port: int = 0
    """Port the gRPC server binds; 0 picks a free one (reported on the ready fd)."""
    data_port: int = 0
    """The data path's port (``klambda.protos.frames``), on grpc_host; 0: a free one."""
    provisioned_concurrency: int = 0
    """Environments initialised at start and kept ready (changed later through Provision)."""
    prewarm: int = 0
    """On-demand environments started at start-up, so the first invocation need not wait for
    a process to spawn (a Kubernetes pod exists because an invocation is coming)."""
    max_environments: int = 64
    """Upper bound on environments this shim runs at once."""
    idle_timeout: float = defaults.KEEP_WARM
    """Seconds an idle on-demand environment is kept warm before it is stopped."""
    init_timeout: float = 10.0
    """Seconds the init phase may take (Lambda's limit is 10 s)."""
    acquire_timeout: float = 1.0
    """Seconds an invocation waits for a free environment when all are busy."""
    drain_grace: float = 0.0
    """Seconds in-flight invocations get to finish on shutdown; 0 means the function timeout."""
    zygote: bool = True
    """Python runtimes: environments are forked from one pre-initialised interpreter (awslambdaric
    imported) instead of each starting its own, which saves the interpreter's start and the
    imports on every cold start."""
    external_runtime: bool = False
    """The runtime is not started by the shim but runs beside it (a container image function:
    the image's own process, in the same pod, calls the Runtime API on ``runtime_api_port``)."""
    runtime_api_host: str = "127.0.0.1"
    """Address the Runtime API binds (loopback: in a pod, shared with the image's container)."""
    runtime_api_port: int = 0
    """Fixed Runtime API port (external runtimes must know it); 0 picks one per environment."""
    log_to_stdout: bool = False
    """Also copy every log stream to the shim's stdout (pods: ``kubectl logs`` shows them)."""
    health_port: int = 0
    """External runtimes: port of ``/healthz``, which fails once after the shim gave up on the
    runtime (a timeout), so that the pod's liveness probe restarts the runtime's container."""
    home_dir: str = ""
    """HOME of the runtimes; empty: the shim makes a private one (0700) for its lifetime."""
    runtime_uid: int = -1
    """The uid (and gid) runtimes run as, when the shim runs as root (``api.isolation``);
    -1: the shim's own. The Runtime API then answers only that uid's connections."""
    caller_token: str = ""
    """The token every gRPC call must carry (``api.shim_auth``); the platforms always set
    it. Empty only for a shim started by hand, which then takes any caller."""

    def lambda_variables(self, runtime_api: str, log_stream: str, init_type: str) -> dict[str, str]:
        """The variables Lambda defines in every environment, image functions' included."""
        return {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShimConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown shim settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> ShimConfig:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def from_json(cls, text: str) -> ShimConfig:
        return cls.from_dict(json.loads(text))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(asdict(self), indent=indent, sort_keys=True)
