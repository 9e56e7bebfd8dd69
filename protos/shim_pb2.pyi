from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class InvokeRequest(_message.Message):
    __slots__ = ("request_id", "payload", "invoked_function_arn", "trace_id", "client_context", "cognito_identity", "tail_log", "timeout_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INVOKED_FUNCTION_ARN_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    COGNITO_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TAIL_LOG_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    payload: bytes
    invoked_function_arn: str
    trace_id: str
    client_context: str
    cognito_identity: str
    tail_log: bool
    timeout_ms: int
    def __init__(self, request_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., invoked_function_arn: _Optional[str] = ..., trace_id: _Optional[str] = ..., client_context: _Optional[str] = ..., cognito_identity: _Optional[str] = ..., tail_log: _Optional[bool] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class InvokeResponse(_message.Message):
    __slots__ = ("payload", "function_error", "executed_version", "log_tail", "duration_ms", "init_duration_ms", "max_memory_used_mb", "error_type", "request_id", "refused", "refused_message")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    INIT_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    function_error: str
    executed_version: str
    log_tail: bytes
    duration_ms: float
    init_duration_ms: float
    max_memory_used_mb: int
    error_type: str
    request_id: str
    refused: str
    refused_message: str
    def __init__(self, payload: _Optional[bytes] = ..., function_error: _Optional[str] = ..., executed_version: _Optional[str] = ..., log_tail: _Optional[bytes] = ..., duration_ms: _Optional[float] = ..., init_duration_ms: _Optional[float] = ..., max_memory_used_mb: _Optional[int] = ..., error_type: _Optional[str] = ..., request_id: _Optional[str] = ..., refused: _Optional[str] = ..., refused_message: _Optional[str] = ...) -> None: ...

class StreamHello(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class StreamWelcome(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("function_name", "version", "config_hash", "environments", "busy", "max_environments", "provisioned_target", "provisioned_ready", "idle_seconds")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    MAX_ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_TARGET_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_READY_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    version: str
    config_hash: str
    environments: int
    busy: int
    max_environments: int
    provisioned_target: int
    provisioned_ready: int
    idle_seconds: float
    def __init__(self, function_name: _Optional[str] = ..., version: _Optional[str] = ..., config_hash: _Optional[str] = ..., environments: _Optional[int] = ..., busy: _Optional[int] = ..., max_environments: _Optional[int] = ..., provisioned_target: _Optional[int] = ..., provisioned_ready: _Optional[int] = ..., idle_seconds: _Optional[float] = ...) -> None: ...

class ProvisionRequest(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...
