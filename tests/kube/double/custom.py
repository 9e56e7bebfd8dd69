"""Write rules of custom resources: prune, default, validate against the CRD's schema and CEL.

The order is apiextensions-apiserver's: defaulting and pruning on decode, then OpenAPI schema
validation, then CEL rules unless the schema errors include a type or enum error ("some
validation rules were not checked ..."). ``schema.py`` and ``cel.py`` do the work.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, invalid
from .kinds import ResourceType
from .schema import apply_defaults, is_blocking, prune, validate
from .settings import Cluster
from .strategy import Obj, Strategy

NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; correct the existing "
    "errors to complete validation"
)


class CustomResourceStrategy(Strategy):
    def __init__(self, rtype: ResourceType) -> None:
        self.schema: dict[str, Any] = rtype.schema or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }

    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        apply_defaults(new, self.schema)
        return prune(new, self.schema)

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        errors = validate(new, self.schema)
        if is_blocking(errors):
            return [*errors, invalid("<nil>", None, NOT_CHECKED)]
        return errors + cluster.cel.validate(new, old, self.schema)
