"""Which write rules (``strategy.py``) apply to a resource type."""

from __future__ import annotations

from .builtin_strategies import BUILTIN_STRATEGIES
from .crd import CrdStrategy
from .custom import CustomResourceStrategy
from .kinds import ResourceType
from .strategy import Strategy


def strategy_for(rtype: ResourceType) -> Strategy:
    if rtype.custom:
        return CustomResourceStrategy(rtype)
    if rtype.kind == "CustomResourceDefinition":
        return CrdStrategy()
    return BUILTIN_STRATEGIES.get(rtype.storage_key, Strategy())
