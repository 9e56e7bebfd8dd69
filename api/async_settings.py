"""The asynchronous invocation settings of each qualifier, resolved from the manifests (pure).

A Function's ``asyncConfig`` applies to ``$LATEST`` and to every version or alias that sets
none of its own; the dead-letter queue and the recursion setting are the function's. Targets
are resolved to what the dispatcher delivers to, with their ARNs (Lambda's
DestinationConfig); a target that cannot be used is reported as a problem the function's
status shows (its records then go where they would without it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from klambda.api import publishing
from klambda.api.arn import account_for, function_arn, queue_arn
from klambda.api.objects import ApiObject
from klambda.api.types import FunctionSpec
from klambda.api.types.async_config import (
    MAX_EVENT_AGE,
    MAX_RETRY_ATTEMPTS,
    AsyncConfig,
    DeadLetterConfig,
    Destination,
)

TargetKind = Literal["function", "queue", "stream"]
LATEST = "$LATEST"


@dataclass(frozen=True)
class Target:
    """Where a record (or a dead-lettered event) is delivered."""

    kind: TargetKind
    account: str
    name: str
    namespace: str | None = None
    """Known for targets in the function's own namespace; for a function named by ARN the
    gateway finds it by account."""
    qualifier: str | None = None
    arn: str = ""


@dataclass(frozen=True)
class AsyncSettings:
    maximum_retry_attempts: int = MAX_RETRY_ATTEMPTS
    maximum_event_age: int = MAX_EVENT_AGE
    on_success: Target | None = None
    on_failure: Target | None = None
    dead_letter: Target | None = None
    recursive_loop: str = "Terminate"
    configured: bool = False
    """An asyncConfig applies (GetFunctionEventInvokeConfig finds one)."""
    last_modified: float = 0.0

    def event_invoke_config(self, qualified_arn: str) -> dict[str, Any]:
        """Lambda's FunctionEventInvokeConfig."""
        destinations: dict[str, Any] = {}
        for key, target in (("OnSuccess", self.on_success), ("OnFailure", self.on_failure)):
            if target is not None:
                destinations[key] = {"Destination": target.arn}
        return {
            "LastModified": self.last_modified,
            "FunctionArn": qualified_arn,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumEventAgeInSeconds": self.maximum_event_age,
            "DestinationConfig": destinations,
        }


def resolve(
    namespace: str,
    spec: FunctionSpec,
    own: AsyncConfig | None,
    region: str,
    last_modified: float = 0.0,
) -> tuple[AsyncSettings, list[str]]:
    """The settings of one qualifier (``own``: its Version's or Alias's asyncConfig) and the
    problems of its targets."""
    config = own or spec.async_config
    problems: list[str] = []
    account = account_for(namespace)

    def target(where: str, d: Destination | None) -> Target | None:
        return destination(namespace, d, region) if d is not None else None

    on_success = on_failure = None
    if config is not None and config.destinations is not None:
        on_success = target("destinations.onSuccess", config.destinations.on_success)
        on_failure = target("destinations.onFailure", config.destinations.on_failure)
    settings = AsyncSettings(
        maximum_retry_attempts=(
            config.maximum_retry_attempts if config is not None else MAX_RETRY_ATTEMPTS
        ),
        maximum_event_age=config.maximum_event_age_in_seconds if config else MAX_EVENT_AGE,
        on_success=on_success,
        on_failure=on_failure,
        dead_letter=_dead_letter(namespace, account, spec.dead_letter_config, region),
        recursive_loop=spec.recursive_loop,
        configured=config is not None,
        last_modified=last_modified,
    )
    return settings, problems


def destination(namespace: str, d: Destination, region: str) -> Target:
    """A destination as a target: names resolve in ``namespace``; a function ARN keeps its
    account (the namespace holding it is found by the gateway)."""
    account = account_for(namespace)
    if d.queue is not None:
        return Target("queue", account, d.queue, namespace, arn=queue_arn(region, account, d.queue))
    if d.stream is not None:
        arn = f"arn:aws:kinesis:{region}:{account}:stream/{d.stream}"
        return Target("stream", account, d.stream, namespace, arn=arn)
    assert d.function is not None
    ref = d.function
    if ref.startswith("arn:"):
        parts = ref.split(":")  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        qualifier = parts[7] if len(parts) > 7 else None
        target_ns = namespace if parts[4] == account else None
        return Target("function", parts[4], parts[6], target_ns, qualifier, ref)
    name, _, qualifier = ref.partition(":")
    arn = function_arn(region, account, name, qualifier or None)
    return Target("function", account, name, namespace, qualifier or None, arn)


def _dead_letter(
    namespace: str, account: str, config: DeadLetterConfig | None, region: str
) -> Target | None:
    if config is None:
        return None
    arn = queue_arn(region, account, config.queue)
    return Target("queue", account, config.queue, namespace, arn=arn)


def function_async_settings(
    fn: ApiObject, numbered: Mapping[str, ApiObject], aliases: Iterable[ApiObject], region: str
) -> tuple[dict[str, AsyncSettings], list[str]]:
    """Settings per qualifier ($LATEST, each version number, each alias name) of one function,
    and the problems of its targets (for its status)."""
    spec: FunctionSpec = fn.spec
    problems: list[str] = []

    def add(settings: tuple[AsyncSettings, list[str]]) -> AsyncSettings:
        problems.extend(p for p in settings[1] if p not in problems)
        return settings[0]

    changed = _epoch(fn.status.get("lastModified", ""))
    out = {LATEST: add(resolve(fn.namespace, spec, None, region, changed))}
    for number, obj in numbered.items():
        frozen = replace(publishing.spec_of(obj.status), async_config=spec.async_config)
        own = obj.spec.async_config
        out[number] = add(resolve(fn.namespace, frozen, own, region, changed))
    for alias in aliases:
        name = alias.spec.name or alias.name
        out[name] = add(resolve(fn.namespace, spec, alias.spec.async_config, region, changed))
    return out, problems


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
