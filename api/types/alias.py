"""The Alias kind: a named pointer to a version, with weights, provisioned concurrency and a URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from klambda.api.schema import prop
from klambda.api.types.async_config import AsyncConfig
from klambda.api.types.common import (
    FUNCTION_NAME_MAX,
    FUNCTION_NAME_PATTERN,
    Condition,
    Problems,
    ProvisionedStatus,
)
from klambda.api.types.function import FunctionUrl
from klambda.api.types.version import ALIAS_NAME_PATTERN, VERSION_NUMBER_PATTERN


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
        pattern=FUNCTION_NAME_PATTERN,
        max_length=FUNCTION_NAME_MAX,
        doc="The Function aliased.",
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
    async_config: AsyncConfig | None = prop(
        default=None,
        name="asyncConfig",
        doc="Asynchronous invocation settings of invocations through this alias, instead of "
        "the function's.",
    )

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
