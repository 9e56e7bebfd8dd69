"""The Function kind: code and configuration, the mutable ``$LATEST``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from klambda.api.policy import PolicyError, parse_policy
from klambda.api.schema import prop
from klambda.api.types.async_config import AsyncConfig, DeadLetterConfig
from klambda.api.types.common import (
    CODE_PATH_PATTERN,
    ENV_KEY_PATTERN,
    ENV_TOTAL_MAX,
    ENV_VARIABLES_MAX,
    FUNCTION_NAME_PATTERN,
    INLINE_FILE_MAX,
    INLINE_FILES_MAX,
    RESERVED_ENV_KEYS,
    SECRET_REFS_MAX,
    AuthType,
    Condition,
    CorsMethod,
    InvokeMode,
    Problems,
    Runtime,
)


@dataclass(frozen=True)
class Cors:
    """Cross-origin resource sharing for a function URL (Lambda's Cors object)."""

    allow_credentials: bool = prop(default=False, doc="Allow cookies and credentials.")
    allow_headers: list[str] = prop(
        default_factory=list,
        max_items=100,
        item_max_length=1024,
        doc="Request headers allowed in CORS requests.",
    )
    allow_methods: list[CorsMethod] = prop(
        default_factory=list, max_items=6, doc="HTTP methods allowed, or '*'."
    )
    allow_origins: list[str] = prop(
        default_factory=list,
        max_items=100,
        item_max_length=253,
        doc="Origins allowed, e.g. https://example.com or '*'.",
    )
    expose_headers: list[str] = prop(
        default_factory=list,
        max_items=100,
        item_max_length=1024,
        doc="Response headers exposed to the browser.",
    )
    max_age: int = prop(
        default=0,
        minimum=0,
        maximum=86400,
        doc="Seconds a browser may cache a preflight answer.",
    )

    def check(self) -> Problems:
        for i, origin in enumerate(self.allow_origins):
            if not 1 <= len(origin) <= 253:
                yield f".allowOrigins[{i}]", "must be 1 to 253 characters"


@dataclass(frozen=True)
class FunctionUrl:
    """A dedicated HTTP endpoint for the function (Lambda's FunctionUrlConfig)."""

    auth_type: AuthType = prop(doc="NONE (public) or AWS_IAM (SigV4-signed callers only).")
    cors: Cors | None = prop(default=None, doc="CORS settings; omit to pass the function's own.")
    invoke_mode: InvokeMode = prop(default="BUFFERED", doc="BUFFERED or RESPONSE_STREAM.")


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret in the function's namespace."""

    name: str = prop(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        doc="The Secret's name.",
    )
    key: str = prop(
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
        doc="The key within the Secret's data.",
    )


@dataclass(frozen=True)
class Environment:
    """Environment variables set in every execution environment."""

    variables: dict[str, str] = prop(
        default_factory=dict,
        key_pattern=ENV_KEY_PATTERN,
        max_properties=ENV_VARIABLES_MAX,
        item_max_length=ENV_TOTAL_MAX,
        doc="Variable names and values; at most 4 KB in total, Lambda's reserved names refused.",
    )
    secret_refs: dict[str, SecretKeyRef] = prop(
        default_factory=dict,
        name="secretRefs",
        key_pattern=ENV_KEY_PATTERN,
        max_properties=SECRET_REFS_MAX,
        doc="Variables whose values come from Secrets: name to {name, key} of a Secret in the "
        "function's namespace. The values never appear in manifests, status or the API.",
    )

    def check(self) -> Problems:
        for key in sorted(self.variables):
            if key in RESERVED_ENV_KEYS:
                yield (
                    f".variables.{key}",
                    "is reserved by the platform and cannot be set",
                )
        for key in sorted(self.secret_refs):
            if key in RESERVED_ENV_KEYS:
                yield (
                    f".secretRefs.{key}",
                    "is reserved by the platform and cannot be set",
                )
            if key in self.variables:
                yield (
                    f".secretRefs.{key}",
                    "is also set in variables: set it in one place",
                )
        total = sum(len(k.encode()) + len(v.encode()) for k, v in self.variables.items())
        if total > ENV_TOTAL_MAX:
            yield (
                ".variables",
                f"must total at most 4 KB (4096 bytes), got {total} bytes",
            )


@dataclass(frozen=True)
class Code:
    """Where the function's code comes from: exactly one of inline, configMap, zip, image."""

    __cel__ = (
        (
            "[has(self.inline), has(self.configMap), has(self.zip), has(self.image)]"
            ".filter(x, x).size() == 1",
            "exactly one of inline, configMap, zip or image must be set",
        ),
    )

    inline: dict[str, str] | None = prop(
        default=None,
        key_pattern=CODE_PATH_PATTERN,
        max_properties=INLINE_FILES_MAX,
        item_max_length=INLINE_FILE_MAX,
        doc="File path (relative) to file content, e.g. {app.py: '...'}.",
    )
    config_map: str | None = prop(
        default=None,
        name="configMap",
        pattern=FUNCTION_NAME_PATTERN.replace("[-a-z0-9]", "[-a-z0-9.]"),
        max_length=253,
        doc="Name of a ConfigMap in the same namespace whose keys are file paths.",
    )
    zip: str | None = prop(
        default=None,
        min_length=1,
        max_length=2048,
        doc="Path or http(s) URL of a zip archive of the code.",
    )
    image: str | None = prop(
        default=None,
        min_length=1,
        max_length=1024,
        pattern=r"^[^\s]+$",
        pattern_message="must not contain whitespace",
        doc="Container image implementing the Lambda Runtime API (as a Lambda container image "
        "does); no runtime or handler. Kubernetes only.",
    )

    def check(self) -> Problems:
        kinds = ("inline", "config_map", "zip", "image")
        if len([k for k in kinds if getattr(self, k) is not None]) != 1:
            yield "", "exactly one of inline, configMap, zip or image must be set"


@dataclass(frozen=True)
class ImageConfig:
    """Overrides of the image's own settings (Lambda's ImageConfig)."""

    entry_point: list[str] | None = prop(
        default=None,
        name="entryPoint",
        max_items=64,
        item_max_length=1024,
        doc="ENTRYPOINT.",
    )
    command: list[str] | None = prop(
        default=None, max_items=64, item_max_length=1024, doc="CMD, e.g. [app.handler]."
    )
    working_directory: str | None = prop(
        default=None, name="workingDirectory", max_length=1024, doc="WORKDIR."
    )


@dataclass(frozen=True)
class VpcConfig:
    """Egress allowed to the function's pods; absent means all egress is allowed."""

    egress: list[Any] = prop(
        default_factory=list,
        max_items=64,
        doc="NetworkPolicy egress rules (to: [ipBlock|namespaceSelector|podSelector], ports).",
    )


@dataclass(frozen=True)
class FunctionSpec:
    """Code and configuration of a function; the Function object is its mutable $LATEST."""

    __cel__ = (
        (
            "has(self.code.image) != has(self.runtime)",
            "runtime is required, except with code.image (where the image is the runtime)",
        ),
        (
            "!has(self.runtime) || self.runtime.startsWith('provided') || has(self.handler)",
            "handler is required unless the runtime is provided",
        ),
        (
            "!has(self.code.image) || !has(self.handler)",
            "an image function has no handler: set imageConfig.command",
        ),
        (
            "has(self.code.image) || !has(self.imageConfig)",
            "imageConfig applies only to code.image",
        ),
    )

    code: Code = prop(doc="The function's code.")
    runtime: Runtime | None = prop(
        default=None,
        doc="Runtime identifier, e.g. python3.12 or provided; omitted with code.image.",
    )
    image_config: ImageConfig | None = prop(
        default=None,
        name="imageConfig",
        doc="Entry point, command and directory of code.image.",
    )
    handler: str | None = prop(
        default=None,
        max_length=128,
        pattern=r"^[^\s]+$",
        pattern_message="must not contain whitespace",
        doc="Entry point, e.g. app.handler (module.function).",
    )
    memory_size: int = prop(
        default=128,
        minimum=128,
        maximum=10240,
        doc="Memory in MB each environment may use.",
    )
    timeout: int = prop(default=3, minimum=1, maximum=900, doc="Maximum run time in seconds.")
    environment: Environment | None = prop(default=None, doc="Environment variables.")
    description: str = prop(default="", max_length=256, doc="Free text.")
    ephemeral_storage: int = prop(
        default=512, minimum=512, maximum=10240, doc="Size of /tmp in MB."
    )
    url: FunctionUrl | None = prop(default=None, doc="Function URL for $LATEST.")
    reserved_concurrency: int | None = prop(
        default=None,
        minimum=0,
        doc="Concurrency reserved for this function: a cap and a guarantee; 0 throttles "
        "every invocation.",
    )
    role: str | None = prop(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        doc="Execution role: the ServiceAccount the function's pods run as (Kubernetes); "
        "without one no API token is mounted.",
    )
    vpc_config: VpcConfig | None = prop(
        default=None, doc="Network egress the function's pods may use (Kubernetes)."
    )
    policy: Any = prop(
        default=None,
        doc="Resource-based policy (IAM JSON with Statement, Principal, Action, Condition): "
        "who may invoke this function and its URLs.",
    )
    async_config: AsyncConfig | None = prop(
        default=None,
        name="asyncConfig",
        doc="Retries, event age and destinations of asynchronous invocations (Lambda's "
        "FunctionEventInvokeConfig); a Version or Alias may set its own.",
    )
    dead_letter_config: DeadLetterConfig | None = prop(
        default=None,
        name="deadLetterConfig",
        doc="Queue for events that failed when no onFailure destination takes them.",
    )
    recursive_loop: Literal["Allow", "Terminate"] = prop(
        default="Terminate",
        name="recursiveLoop",
        doc="Terminate: an event that has gone round 16 times through klambda (async "
        "invocations, destinations, queues) is not invoked again (Lambda's recursion config).",
    )

    @property
    def is_image(self) -> bool:
        return self.code.image is not None

    def check(self) -> Problems:
        if self.is_image == (self.runtime is not None):
            yield (
                ".runtime",
                (
                    "must not be set with code.image (the image is the runtime)"
                    if self.is_image
                    else "required value"
                ),
            )
        elif self.is_image and self.handler is not None:
            yield (
                ".handler",
                "an image function has no handler: set imageConfig.command",
            )
        elif self.handler is None and self.runtime and not self.runtime.startswith("provided"):
            yield (
                ".handler",
                "required value (handler is required unless the runtime is provided)",
            )
        if self.image_config is not None and not self.is_image:
            yield ".imageConfig", "applies only to code.image"
        if self.policy is not None:
            try:
                parse_policy(self.policy, resource_policy=True)
            except PolicyError as e:
                yield ".policy", str(e)

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment.variables) if self.environment else {}

    @property
    def secret_refs(self) -> dict[str, SecretKeyRef]:
        return dict(self.environment.secret_refs) if self.environment else {}


@dataclass(frozen=True)
class FunctionStatus:
    """What the platform observed about a Function."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    state: Literal["Pending", "Active", "Inactive", "Failed"] = prop(
        default="Pending", doc="Lambda's State."
    )
    url: str = prop(default="", doc="Function URL of $LATEST, when configured.")
    code_sha256: str = prop(default="", name="codeSha256", doc="Base64 SHA-256 of the code.")
    last_modified: str = prop(default="", doc="When the spec last changed (ISO 8601).")
    last_version: int = prop(
        default=0,
        doc="Highest version number ever published (numbers are never reused).",
    )
