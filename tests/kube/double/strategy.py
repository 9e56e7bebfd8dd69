"""Kind-specific write rules (the API server's ``RESTCreateStrategy``/``RESTUpdateStrategy``).

``writes.py`` calls ``prepare`` then ``validate`` on every create and update; built-in kinds
are in ``builtin_strategies.py``, custom resources in ``custom.py`` and CRDs in ``crd.py``.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError
from .settings import Cluster

Obj = dict[str, Any]


class Strategy:
    """The default: no defaults, no checks beyond metadata (``writes.py`` does those)."""

    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        """Default and normalise ``new`` in place; return unknown-field paths (for
        ``fieldValidation``)."""
        return []

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        return []

    def on_delete(self, obj: Obj, cluster: Cluster) -> None:
        """Release what the object held (a Service's clusterIP)."""
