"""Every condition Reason klambda writes, typed: what a caller gets while it holds, and whether
waiting helps.

One enum crosses the components: the controller and the operator write these into ``status``,
the shim reports start-up failures with them, and the gateway turns a version's Reason into
the Lambda error an invocation receives (``lambda_error``). A member's ``permanent`` says
whether the platform retries (temporary: with backoff) or waits for the spec to change; a
platform adapter may override it case by case (a zip that is gone for good). See
docs/operations.md#function-status for what each means to a user.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """A CamelCase condition Reason (its value is what ``kubectl get`` shows)."""

    lambda_error: str
    permanent: bool

    def __new__(
        cls, value: str, lambda_error: str = "ResourceNotReadyException", permanent: bool = False
    ) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.lambda_error = lambda_error
        member.permanent = permanent
        return member

    # Ready=True
    ENVIRONMENT_READY = "EnvironmentReady"
    ALIAS_READY = "AliasReady"
    POLLING = "Polling"
    QUEUE_READY = "QueueReady"
    STREAM_READY = "StreamReady"
    SCHEDULED = "Scheduled"
    DISABLED = "Disabled"
    PUBLISHED = "Published"
    UNCHANGED = "Unchanged"
    # Ready=Unknown: on its way
    RECONCILING = "Reconciling"
    PROVISIONING = "Provisioning"
    FUNCTION_NOT_READY = "FunctionNotReady"
    # Ready=False: the spec must change
    INVALID_RUNTIME = "InvalidRuntime", "InvalidRuntimeException", True
    INVALID_SPEC = "InvalidSpec", "ResourceNotReadyException", True
    INVALID_HANDLER = "InvalidHandler", "ResourceNotReadyException", True
    CODE_TOO_LARGE = "CodeTooLarge", "ResourceNotReadyException", True
    IMAGE_NOT_SUPPORTED = "ImageNotSupported", "ResourceNotReadyException", True
    PRECONDITION_FAILED = "PreconditionFailed", "ResourceNotReadyException", True
    THROTTLED = "Throttled", "TooManyRequestsException", True
    # Ready=False: retried with backoff
    CODE_FETCH_FAILED = "CodeFetchFailed"
    SECRET_NOT_FOUND = "SecretNotFound"
    SHIM_START_FAILED = "ShimStartFailed"
    OWNER_NOT_FOUND = "OwnerNotFound"
    NOT_OWNED = "NotOwned"
    CONFLICT = "Conflict"
    APPLY_FAILED = "ApplyFailed"
    QUEUE_VISIBILITY_TIMEOUT_TOO_SHORT = (
        "QueueVisibilityTimeoutTooShort",
        "InvalidParameterValueException",
        True,
    )
    FUNCTION_NOT_FOUND = "FunctionNotFound", "ResourceNotFoundException"
    QUEUE_NOT_FOUND = "QueueNotFound", "ResourceNotFoundException"
    STREAM_NOT_FOUND = "StreamNotFound", "ResourceNotFoundException"
    INVALID_SOURCE = "InvalidSource", "InvalidParameterValueException", True
    """The mapping's settings do not fit its queue or stream (e.g. a FIFO queue's batch)."""
    QUALIFIER_NOT_FOUND = "QualifierNotFound", "ResourceNotFoundException"
    VERSION_NOT_FOUND = "VersionNotFound", "ResourceNotFoundException"
    DUPLICATE_ALIAS = "DuplicateAlias", "ResourceConflictException"
    ACCOUNT_ID_COLLISION = "AccountIdCollision", "ResourceConflictException", True
    PROVISIONED_EXCEEDS_RESERVED = "ProvisionedExceedsReserved", "InvalidParameterValueException"
    PROVISIONED_EXCEEDS_LIMIT = "ProvisionedExceedsLimit", "InvalidParameterValueException"

    @property
    def blocks_invocations(self) -> bool:
        """A version that holds this Reason answers invocations with ``lambda_error`` at once
        instead of waiting for an environment (waiting would not help)."""
        return self in _BLOCKING

    @classmethod
    def of(cls, value: str) -> Reason | None:
        """The member for a Reason read back from status (None for one klambda does not
        write, e.g. written by a newer release)."""
        try:
            return cls(value)
        except ValueError:
            return None


_BLOCKING = frozenset(
    {
        Reason.INVALID_RUNTIME,
        Reason.CODE_FETCH_FAILED,
        Reason.CODE_TOO_LARGE,
        Reason.INVALID_SPEC,
        Reason.ACCOUNT_ID_COLLISION,
    }
)
