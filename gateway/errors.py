"""Platform errors and the one table that turns them into HTTP responses.

Platform errors (throttled, not found, bad request) are raised as ``LambdaError`` subclasses and
rendered in Lambda's wire shape: ``x-amzn-ErrorType`` header plus a JSON body, which botocore
maps onto its named exceptions. Function errors are not exceptions: they are results.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web


class LambdaError(Exception):
    """An error Lambda itself reports (not the function)."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "ServiceException"
    message_key: ClassVar[str] = "Message"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"Type": "User", self.message_key: self.message, **self.extra}


class InvalidParameterValue(LambdaError):
    status = 400
    error_type = "InvalidParameterValueException"


class InvalidRequestContent(LambdaError):
    status = 400
    error_type = "InvalidRequestContentException"


class ResourceNotFound(LambdaError):
    status = 404
    error_type = "ResourceNotFoundException"


class RequestTooLarge(LambdaError):
    status = 413
    error_type = "RequestTooLargeException"


class UnsupportedMediaType(LambdaError):
    status = 415
    error_type = "UnsupportedMediaTypeException"


class TooManyRequests(LambdaError):
    status = 429
    error_type = "TooManyRequestsException"
    message_key = "message"

    def __init__(self, reason: str, message: str = "Rate Exceeded.") -> None:
        super().__init__(message, Reason=reason)


class AuthError(LambdaError):
    """The caller could not be authenticated (botocore turns the type into its exception)."""

    status = 403
    message_key = "message"

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type  # type: ignore[misc]

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class AccessDenied(LambdaError):
    status = 403
    error_type = "AccessDeniedException"

    def body(self) -> dict[str, Any]:
        return {"Message": self.message}


class ServiceError(LambdaError):
    status = 500
    error_type = "ServiceException"

    def body(self) -> dict[str, Any]:
        return {"Type": "Service", "Message": self.message}


class ResourceNotReady(LambdaError):
    status = 502
    error_type = "ResourceNotReadyException"


class InvalidRuntime(LambdaError):
    status = 502
    error_type = "InvalidRuntimeException"


ERROR_TYPES: dict[str, type[LambdaError]] = {
    cls.error_type: cls for cls in (ResourceNotReady, InvalidRuntime, ServiceError)
}


def error_response(err: LambdaError, request_id: str) -> web.Response:
    """The single place where a platform error becomes an HTTP response."""
    return web.Response(
        status=err.status,
        body=json.dumps(err.body()).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": err.error_type, "x-amzn-RequestId": request_id},
    )
