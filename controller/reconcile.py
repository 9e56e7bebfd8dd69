"""Reconcile decisions, pure: from the objects users declared to what must run, and the steps
that get there from what runs now.

Level-based: each reconcile recomputes its function's desired shims from the full specs
(``latest_shim`` here, the rest in ``functions.desired_shims``); the platform adapters carry
the steps out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from klambda.api import schema
from klambda.api.objects import ApiObject
from klambda.api.routes import LATEST
from klambda.api.types import FunctionSpec

ShimKey = tuple[str, str, str]
"""(namespace, function name, version)"""

# Fields that change what runs in an environment; the rest (description, url) only change
# metadata or the gateway's behaviour and never restart environments.
RUNTIME_FIELDS = (
    "runtime",
    "code",
    "handler",
    "memorySize",
    "timeout",
    "environment",
    "ephemeralStorage",
    "role",
    "vpcConfig",
)


@dataclass(frozen=True)
class DesiredShim:
    """One function version that must be able to run, in the exact configuration given."""

    namespace: str
    name: str
    version: str
    spec: FunctionSpec
    config_hash: str
    provisioned: int = 0
    """Environments to keep initialised (provisioned concurrency)."""
    code_sha256: str | None = None
    """The exact code a published version froze; None for $LATEST (its spec says)."""

    @property
    def key(self) -> ShimKey:
        return (self.namespace, self.name, self.version)


@dataclass(frozen=True)
class RunningShim:
    """What a platform reports for a shim it runs."""

    namespace: str
    name: str
    version: str
    config_hash: str
    provisioned: int = 0

    @property
    def key(self) -> ShimKey:
        return (self.namespace, self.name, self.version)


@dataclass(frozen=True)
class Start:
    desired: DesiredShim


@dataclass(frozen=True)
class Replace:
    """Roll to a new configuration: start the new shim, switch traffic, then drain the old."""

    desired: DesiredShim
    current: RunningShim


@dataclass(frozen=True)
class Stop:
    current: RunningShim


@dataclass(frozen=True)
class Provision:
    """Change how many environments a running shim keeps initialised."""

    key: ShimKey
    count: int


Action = Start | Replace | Stop | Provision


def config_hash(spec: FunctionSpec, inputs: Mapping[str, str] | None = None) -> str:
    """Hash of everything that shapes an environment, plus external inputs (ConfigMap data)."""
    dumped = schema.dump(spec)
    relevant = {k: dumped[k] for k in RUNTIME_FIELDS if k in dumped}
    blob = json.dumps({"spec": relevant, "inputs": dict(inputs or {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_inputs(spec: FunctionSpec, config_maps: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """External data the code depends on, so that editing a ConfigMap rolls the function."""
    name = spec.code.config_map
    if name is None:
        return {}
    data = config_maps.get(name)
    digest = (
        "missing"
        if data is None
        else hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()[:16]
    )
    return {f"configMap/{name}": digest}


def secret_inputs(spec: FunctionSpec, secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Digests of the Secret values the environment gets, so editing a Secret rolls the function
    where the store holds Secrets (locally; on Kubernetes they are not read, so never change)."""
    out = {}
    for var, ref in sorted(spec.secret_refs.items()):
        value = secrets.get(ref.name, {}).get(ref.key)
        digest = "missing" if value is None else hashlib.sha256(value.encode()).hexdigest()[:16]
        out[f"secret/{var}"] = digest
    return out


def latest_shim(
    fn: ApiObject,
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> DesiredShim:
    """A function's $LATEST: always runnable (its environments start on first use)."""
    spec: FunctionSpec = fn.spec
    inputs = {**code_inputs(spec, config_maps), **secret_inputs(spec, secrets or {})}
    return DesiredShim(fn.namespace, fn.name, LATEST, spec, config_hash(spec, inputs))


def plan(
    desired: Mapping[ShimKey, DesiredShim], running: Mapping[ShimKey, RunningShim]
) -> list[Action]:
    """Steps from ``running`` to ``desired``: stops first (they free capacity), then starts."""
    actions: list[Action] = [Stop(cur) for key, cur in running.items() if key not in desired]
    for key, want in desired.items():
        cur = running.get(key)
        if cur is None:
            actions.append(Start(want))
        elif cur.config_hash != want.config_hash:
            actions.append(Replace(want, cur))
        elif cur.provisioned != want.provisioned:
            actions.append(Provision(key, want.provisioned))
    return actions
