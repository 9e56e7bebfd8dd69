"""Async settings per qualifier, resolved from manifests: overrides, targets and their ARNs."""

from __future__ import annotations

from typing import Any

from klambda.api.arn import account_for
from klambda.api.async_settings import Target, function_async_settings
from klambda.api.objects import ApiObject, parse_object

ACCOUNT = account_for("shop")
OTHER = account_for("billing")


def obj(
    kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None
) -> ApiObject:
    o = parse_object(
        {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "shop"},
            "spec": spec,
        }
    )
    if status:
        o.status.update(status)
    return o


FUNCTION = {
    "runtime": "python3.12",
    "handler": "app.handler",
    "code": {"inline": {"app.py": "x"}},
    "asyncConfig": {
        "maximumRetryAttempts": 1,
        "destinations": {
            "onSuccess": {"queue": "done"},
            "onFailure": {"function": f"arn:aws:lambda:us-east-1:{OTHER}:function:sink:live"},
        },
    },
    "deadLetterConfig": {"queue": "dlq"},
}


def test_the_functions_settings_and_their_targets() -> None:
    settings, problems = function_async_settings(
        obj("Function", "orders", FUNCTION), {}, [], "us-east-1"
    )
    latest = settings["$LATEST"]
    assert problems == [] and latest.configured and latest.maximum_retry_attempts == 1
    assert latest.maximum_event_age == 21600 and latest.recursive_loop == "Terminate"
    assert latest.on_success == Target(
        "queue", ACCOUNT, "done", "shop", arn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:done"
    )
    assert latest.on_failure == Target(
        "function",
        OTHER,
        "sink",
        None,
        "live",
        f"arn:aws:lambda:us-east-1:{OTHER}:function:sink:live",
    )  # another account: the gateway finds its namespace and checks its policy
    assert latest.dead_letter is not None and latest.dead_letter.name == "dlq"
    config = latest.event_invoke_config("arn:fn:$LATEST")
    assert config["DestinationConfig"]["OnSuccess"] == {
        "Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:done"
    }


def test_an_alias_replaces_the_functions_settings_and_a_stream_is_refused() -> None:
    alias = obj(
        "Alias",
        "live",
        {
            "functionName": "orders",
            "functionVersion": "$LATEST",
            "asyncConfig": {
                "maximumRetryAttempts": 0,
                "destinations": {
                    "onSuccess": {"function": "audit:prod"},
                    "onFailure": {"stream": "errors"},
                },
            },
        },
    )
    settings, problems = function_async_settings(
        obj("Function", "orders", FUNCTION), {}, [alias], "us-east-1"
    )
    live = settings["live"]
    assert live.maximum_retry_attempts == 0
    assert live.on_success == Target(
        "function",
        ACCOUNT,
        "audit",
        "shop",
        "prod",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:audit:prod",
    )
    assert live.on_failure is not None and live.on_failure.kind == "stream"
    assert (
        live.on_failure.arn == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{live.on_failure.name}"
    )
    assert problems == []
    assert live.dead_letter == settings["$LATEST"].dead_letter  # the function's


def test_without_any_async_config_nothing_is_configured() -> None:
    bare = {k: v for k, v in FUNCTION.items() if k not in ("asyncConfig", "deadLetterConfig")}
    settings, _ = function_async_settings(obj("Function", "plain", bare), {}, [], "us-east-1")
    assert not settings["$LATEST"].configured and settings["$LATEST"].on_failure is None
