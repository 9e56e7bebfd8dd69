"""The klambda API (group ``klambda.io``): spec and status classes of each kind.

These declarations are the single source of truth for field names, defaults and limits: the CRDs
in ``charts/klambda/crds/`` are generated from them (``crd``), and the local platform validates
manifests against them (``schema.parse``). Field names are Lambda's, in camelCase.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from klambda.api.policy import PolicyError, parse_policy
from klambda.api.schema import prop

GROUP = "klambda.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Runtime = Literal[
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "provided",
    "provided.al2",
    "provided.al2023",
]
AuthType = Literal["NONE", "AWS_IAM"]
InvokeMode = Literal["BUFFERED", "RESPONSE_STREAM"]
CorsMethod = Literal["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"]

# Lambda names allow [a-zA-Z0-9-_]{1,64}; Kubernetes object names are DNS labels. A Function's
# name is its metadata.name, so it must satisfy both, and it stays usable as a host-name label.
FUNCTION_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
FUNCTION_NAME_MAX = 63
ENV_KEY_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]*$"
CODE_PATH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$"
ENV_TOTAL_MAX = 4096
ENV_VARIABLES_MAX = 256  # 4 KB cannot hold many more; bounds the API server's validation cost
INLINE_FILES_MAX = 256
SECRET_REFS_MAX = 64
INLINE_FILE_MAX = 1024 * 1024  # an object is at most ~1.5 MB in etcd anyway

# Lambda refuses these as user variables: the platform sets them.
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

Problems = Iterator[tuple[str, str]]


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
        default=0, minimum=0, maximum=86400, doc="Seconds a browser may cache a preflight answer."
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
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, doc="The Secret's name."
    )
    key: str = prop(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, doc="The key within the Secret's data."
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
                yield f".variables.{key}", "is reserved by the platform and cannot be set"
        for key in sorted(self.secret_refs):
            if key in RESERVED_ENV_KEYS:
                yield f".secretRefs.{key}", "is reserved by the platform and cannot be set"
            if key in self.variables:
                yield f".secretRefs.{key}", "is also set in variables: set it in one place"
        total = sum(len(k.encode()) + len(v.encode()) for k, v in self.variables.items())
        if total > ENV_TOTAL_MAX:
            yield ".variables", f"must total at most 4 KB (4096 bytes), got {total} bytes"


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
        default=None, name="entryPoint", max_items=64, item_max_length=1024, doc="ENTRYPOINT."
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
        default=None, name="imageConfig", doc="Entry point, command and directory of code.image."
    )
    handler: str | None = prop(
        default=None,
        max_length=128,
        pattern=r"^[^\s]+$",
        pattern_message="must not contain whitespace",
        doc="Entry point, e.g. app.handler (module.function).",
    )
    memory_size: int = prop(
        default=128, minimum=128, maximum=10240, doc="Memory in MB each environment may use."
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
            yield ".handler", "an image function has no handler: set imageConfig.command"
        elif self.handler is None and self.runtime and not self.runtime.startswith("provided"):
            yield ".handler", "required value (handler is required unless the runtime is provided)"
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


VERSION_NUMBER_PATTERN = r"^[0-9]+$"
ALIAS_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"


@dataclass(frozen=True)
class VersionSpec:
    """An immutable, numbered snapshot of a Function's code and configuration (PublishVersion).

    The platform numbers versions 1, 2, 3, ... per function, never reusing a number, and records
    the snapshot in status when it first sees the object.
    """

    __cel__ = (
        (
            "self.functionName == oldSelf.functionName && "
            "self.description == oldSelf.description && "
            "(has(self.codeSha256) == has(oldSelf.codeSha256)) && "
            "(!has(self.codeSha256) || self.codeSha256 == oldSelf.codeSha256)",
            "a Version is immutable (only provisionedConcurrency may change): publish a new one",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN, max_length=FUNCTION_NAME_MAX, doc="The Function to snapshot."
    )
    description: str = prop(default="", max_length=256, doc="Free text for this version.")
    code_sha256: str | None = prop(
        default=None,
        name="codeSha256",
        max_length=64,
        doc="Publish only if the function's code has this CodeSha256 (Lambda's precondition).",
    )
    provisioned_concurrency: int = prop(
        default=0,
        minimum=0,
        doc="Environments kept initialised for this version before traffic arrives.",
    )


IMMUTABLE_VERSION_FIELDS = ("function_name", "description", "code_sha256")


@dataclass(frozen=True)
class RoutingConfig:
    """Send a share of an alias's traffic to a second version."""

    __cel__ = (
        (
            "self.additionalVersionWeights.all(k, self.additionalVersionWeights[k] > 0.0 && "
            "self.additionalVersionWeights[k] < 1.0)",
            "weights must be greater than 0 and less than 1",
        ),
    )

    additional_version_weights: dict[str, float] = prop(
        default_factory=dict,
        max_properties=1,
        key_pattern=VERSION_NUMBER_PATTERN,
        doc="At most one {version: weight}; the weight (between 0 and 1) is that version's share.",
    )

    def check(self) -> Problems:
        for version, weight in self.additional_version_weights.items():
            if not 0.0 < weight < 1.0:
                yield (
                    f".additionalVersionWeights.{version}",
                    f"must be greater than 0 and less than 1 (got {weight})",
                )


@dataclass(frozen=True)
class AliasSpec:
    """A named pointer to a version, optionally splitting traffic with a second version."""

    __cel__ = (
        (
            "!has(self.routingConfig) || size(self.routingConfig.additionalVersionWeights) == 0 || "
            "self.functionVersion != '$LATEST'",
            "an alias with routingConfig must point to a published version, not $LATEST",
        ),
        (
            "!has(self.routingConfig) || "
            "!(self.functionVersion in self.routingConfig.additionalVersionWeights)",
            "the additional version must differ from functionVersion",
        ),
        (
            "self.provisionedConcurrency == 0 || self.functionVersion != '$LATEST'",
            "provisioned concurrency needs a published version, not $LATEST",
        ),
        (
            "!has(self.name) || !self.name.matches('^[0-9]+$')",
            "an alias name cannot be a number (numbers name versions)",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN, max_length=FUNCTION_NAME_MAX, doc="The Function aliased."
    )
    function_version: str = prop(
        pattern=r"^(\$LATEST|[0-9]+)$",
        max_length=16,
        pattern_message="must be a version number or $LATEST",
        doc="The version the alias points to (a number, or $LATEST without routing).",
    )
    name: str | None = prop(
        default=None,
        max_length=128,
        pattern=ALIAS_NAME_PATTERN,
        doc="The alias name callers use as qualifier; defaults to metadata.name.",
    )
    description: str = prop(default="", max_length=256, doc="Free text.")
    routing_config: RoutingConfig | None = prop(default=None, doc="Weighted traffic split.")
    provisioned_concurrency: int = prop(
        default=0, minimum=0, doc="Environments kept initialised behind this alias."
    )
    url: FunctionUrl | None = prop(default=None, doc="Function URL for this alias.")

    def check(self) -> Problems:
        weights = self.routing_config.additional_version_weights if self.routing_config else {}
        if weights and self.function_version == "$LATEST":
            yield (
                ".routingConfig",
                ("an alias with routingConfig must point to a published version, not $LATEST"),
            )
        if self.function_version in weights:
            yield (
                ".routingConfig.additionalVersionWeights",
                ("the additional version must differ from functionVersion"),
            )
        if self.provisioned_concurrency and self.function_version == "$LATEST":
            yield (
                ".provisionedConcurrency",
                ("provisioned concurrency needs a published version, not $LATEST"),
            )
        if self.name is not None and re.fullmatch(VERSION_NUMBER_PATTERN, self.name):
            yield ".name", "an alias name cannot be a number (numbers name versions)"

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.routing_config.additional_version_weights) if self.routing_config else {}


QUEUE_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,80}$"
DEFAULT_BATCHES_IN_FLIGHT = 5


@dataclass(frozen=True)
class QueueSource:
    """A Redis-backed queue with SQS semantics (key ``klambda:queue:<namespace>:<name>``)."""

    __cel__ = (
        (
            "has(self.maxReceiveCount) == has(self.deadLetterQueue)",
            "maxReceiveCount and deadLetterQueue go together (SQS's redrive policy)",
        ),
    )

    name: str = prop(pattern=QUEUE_NAME_PATTERN, max_length=80, doc="The queue's name.")
    visibility_timeout: int = prop(
        default=30,
        minimum=0,
        maximum=43200,
        doc="Seconds a received message stays hidden before it is delivered again (SQS's "
        "VisibilityTimeout); make it at least 6 times the function's timeout.",
    )
    max_receive_count: int | None = prop(
        default=None,
        minimum=1,
        maximum=1000,
        doc="Receives after which a message goes to deadLetterQueue instead of the function.",
    )
    dead_letter_queue: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=80,
        doc="Queue (same namespace) that takes messages received maxReceiveCount times.",
    )

    def check(self) -> Problems:
        if (self.max_receive_count is None) != (self.dead_letter_queue is None):
            yield "", "maxReceiveCount and deadLetterQueue go together (SQS's redrive policy)"
        if self.dead_letter_queue == self.name:
            yield ".deadLetterQueue", "must differ from the queue itself"


@dataclass(frozen=True)
class ScalingConfig:
    """How many batches of one mapping may run at once (Lambda's ScalingConfig)."""

    maximum_concurrency: int = prop(
        default=DEFAULT_BATCHES_IN_FLIGHT,
        minimum=2,
        maximum=1000,
        doc="Batches in flight at once, per gateway replica.",
    )


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """A queue feeding a function in batches (Lambda's CreateEventSourceMapping for SQS)."""

    __cel__ = (
        (
            "self.batchSize <= 10 || self.maximumBatchingWindowInSeconds >= 1",
            "a batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN, max_length=FUNCTION_NAME_MAX, doc="The Function invoked."
    )
    queue: QueueSource = prop(doc="The queue read.")
    qualifier: str | None = prop(
        default=None,
        pattern=r"^(\$LATEST|[a-zA-Z0-9_-]+)$",
        max_length=128,
        doc="Version or alias invoked; $LATEST when omitted.",
    )
    batch_size: int = prop(
        default=10, minimum=1, maximum=10000, doc="Most messages per invocation."
    )
    maximum_batching_window_in_seconds: int = prop(
        default=0,
        minimum=0,
        maximum=300,
        doc="Seconds to wait for a batch to fill before invoking with what has come.",
    )
    enabled: bool = prop(default=True, doc="False pauses polling; messages wait in the queue.")
    scaling_config: ScalingConfig | None = prop(
        default=None,
        name="scalingConfig",
        doc=f"Concurrent batches; {DEFAULT_BATCHES_IN_FLIGHT} when omitted (Lambda's pollers "
        "start with 5).",
    )
    function_response_types: list[Literal["ReportBatchItemFailures"]] = prop(
        default_factory=list,
        max_items=1,
        doc="[ReportBatchItemFailures]: the function returns batchItemFailures and only those "
        "messages stay in the queue.",
    )

    def check(self) -> Problems:
        if self.batch_size > 10 and self.maximum_batching_window_in_seconds < 1:
            yield (
                ".batchSize",
                "a batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
            )


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition; Reason is a CamelCase constant, Message is for humans."""

    type: str = prop(doc="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = prop(doc="True, False or Unknown.")
    reason: str = prop(default="", doc="CamelCase reason for the status.")
    message: str = prop(default="", doc="Human-readable detail.")
    last_transition_time: str = prop(default="", doc="When status last changed (RFC 3339).")
    observed_generation: int = prop(default=0, doc="Generation the condition was computed for.")


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
        default=0, doc="Highest version number ever published (numbers are never reused)."
    )


@dataclass(frozen=True)
class ProvisionedStatus:
    """Provisioned concurrency: asked for, placed on versions, initialised and ready."""

    requested: int = prop(default=0, doc="Environments asked for.")
    allocated: int = prop(default=0, doc="Environments the platform is keeping.")
    ready: int = prop(default=0, doc="Environments initialised and ready for traffic.")


@dataclass(frozen=True)
class VersionStatus:
    """The version's number and snapshot, recorded once."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    version: str = prop(default="", doc="The version number, e.g. 3.")
    code_sha256: str = prop(default="", name="codeSha256", doc="CodeSha256 of the snapshot.")
    config_hash: str = prop(default="", doc="Hash of the snapshot's runtime configuration.")
    function_spec: Any = prop(default=None, doc="The Function spec as published.")
    provisioned_concurrency: ProvisionedStatus | None = prop(
        default=None, doc="Provisioned environments of this version."
    )


@dataclass(frozen=True)
class AliasStatus:
    """Where the alias points now and how ready it is."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    alias_arn: str = prop(default="", doc="The alias's ARN.")
    url: str = prop(default="", doc="Function URL of the alias, when configured.")
    provisioned_concurrency: ProvisionedStatus | None = prop(
        default=None, doc="Provisioned environments behind this alias."
    )


@dataclass(frozen=True)
class EventSourceMappingStatus:
    """Whether the mapping delivers, and to what."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    state: str = prop(default="", doc="Enabled or Disabled (Lambda's State).")
    event_source_arn: str = prop(default="", doc="ARN of the queue (arn:aws:sqs:...).")
    function_arn: str = prop(default="", doc="ARN of the function (and qualifier) invoked.")


@dataclass(frozen=True)
class Column:
    """A ``kubectl get`` printer column."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """How one kind is named on the API; the spec class carries its schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type
    status: type | None
    columns: tuple[Column, ...] = ()
    name_rules: tuple[tuple[str, str], ...] = ()
    """CEL rules on metadata.name beyond Kubernetes' own (which already enforce DNS rules)."""


READY_COLUMN = Column("Ready", '.status.conditions[?(@.type=="Ready")].status')
REASON_COLUMN = Column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1)
AGE_COLUMN = Column("Age", ".metadata.creationTimestamp", "date")

FUNCTION = Kind(
    "Function",
    "functions",
    "function",
    ("fn",),
    FunctionSpec,
    FunctionStatus,
    columns=(
        Column("Runtime", ".spec.runtime"),
        Column("State", ".status.state"),
        READY_COLUMN,
        REASON_COLUMN,
        Column("URL", ".status.url"),
        AGE_COLUMN,
    ),
    name_rules=(
        (
            f"self.metadata.name.size() <= {FUNCTION_NAME_MAX}",
            f"function names are at most {FUNCTION_NAME_MAX} characters",
        ),
        (
            "!self.metadata.name.contains('--')",
            "function names must not contain '--' (it separates the alias in URL ids)",
        ),
    ),
)
VERSION_KIND = Kind(
    "Version",
    "versions",
    "version",
    ("fnv",),
    VersionSpec,
    VersionStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Version", ".status.version"),
        READY_COLUMN,
        Column("Provisioned", ".status.provisionedConcurrency.ready", "integer", 1),
        Column("Description", ".spec.description", priority=1),
        AGE_COLUMN,
    ),
)
ALIAS_KIND = Kind(
    "Alias",
    "aliases",
    "alias",
    ("fna",),
    AliasSpec,
    AliasStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Version", ".spec.functionVersion"),
        Column("Weights", ".spec.routingConfig.additionalVersionWeights"),
        Column("Provisioned", ".status.provisionedConcurrency.ready", "integer"),
        READY_COLUMN,
        Column("URL", ".status.url", priority=1),
        AGE_COLUMN,
    ),
    name_rules=(
        (
            "has(self.spec.name) || !self.metadata.name.matches('^[0-9]+$')",
            "an alias name cannot be a number (numbers name versions): set spec.name",
        ),
    ),
)
ESM_KIND = Kind(
    "EventSourceMapping",
    "eventsourcemappings",
    "eventsourcemapping",
    ("esm",),
    EventSourceMappingSpec,
    EventSourceMappingStatus,
    columns=(
        Column("Function", ".spec.functionName"),
        Column("Queue", ".spec.queue.name"),
        Column("State", ".status.state"),
        READY_COLUMN,
        REASON_COLUMN,
        AGE_COLUMN,
    ),
)
KINDS: dict[str, Kind] = {k.kind: k for k in (FUNCTION, VERSION_KIND, ALIAS_KIND, ESM_KIND)}


def name_problems(name: Any) -> list[str]:
    """Why ``name`` is not a valid function name (empty when it is)."""
    if not isinstance(name, str) or not name:
        return ["required value"]
    problems = []
    if len(name) > FUNCTION_NAME_MAX:
        problems.append(f"must be no more than {FUNCTION_NAME_MAX} characters")
    if not re.fullmatch(FUNCTION_NAME_PATTERN, name):
        problems.append(
            "must consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character"
        )
    if "--" in name:
        problems.append("must not contain '--' (it separates the alias in function URL ids)")
    return problems


def kind_named(word: str) -> str | None:
    """The kind a user means by ``word`` (kind, plural, singular or short name), as kubectl."""
    word = word.lower()
    if word in ("configmap", "configmaps", "cm"):
        return "ConfigMap"
    if word in ("secret", "secrets"):
        return "Secret"
    for k in KINDS.values():
        if word in (k.kind.lower(), k.plural, k.singular, *k.short_names):
            return k.kind
    return None
