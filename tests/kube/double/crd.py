"""CustomResourceDefinitions: their own validation, and the resource types they define.

A v1 CRD must name itself ``<plural>.<group>``, have exactly one storage version and a
structural schema per version (every node typed, ``metadata`` restricted to name and
generateName, CEL rules that compile). The CRD's kinds are served only once the establishing
controller (``controllers.py``) has set ``Established``.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, forbidden, invalid, required
from .kinds import PrinterColumn, ResourceType
from .settings import Cluster
from .strategy import Obj, Strategy

_ALLOWED_ROOT_METADATA = {"name", "generateName"}


class CrdStrategy(Strategy):
    def prepare(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[str]:
        spec = new.setdefault("spec", {})
        spec.setdefault("conversion", {"strategy": "None"})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", f"{names['kind']}List")
        storage = [
            v.get("name")
            for v in spec.get("versions") or []
            if isinstance(v, dict) and v.get("storage")
        ]
        status = new.setdefault("status", {})
        if old is None:
            status.update(
                {
                    "conditions": [],
                    "acceptedNames": {"plural": "", "kind": ""},
                    "storedVersions": [],
                }
            )
        status["storedVersions"] = list(
            dict.fromkeys([*status.get("storedVersions", []), *storage])
        )
        return []

    def validate(self, new: Obj, old: Obj | None, cluster: Cluster) -> list[FieldError]:
        spec = new.get("spec") or {}
        names = spec.get("names") or {}
        errors: list[FieldError] = []
        group, plural = spec.get("group") or "", names.get("plural") or ""
        if not group:
            errors.append(required("spec.group"))
        elif "." not in group:
            errors.append(invalid("spec.group", group, "should be a domain with at least one dot"))
        for key in ("plural", "kind"):
            if not names.get(key):
                errors.append(required(f"spec.names.{key}"))
        if new["metadata"].get("name") != f"{plural}.{group}":
            errors.append(
                invalid(
                    "metadata.name",
                    new["metadata"].get("name"),
                    'must be spec.names.plural+"."+spec.group',
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            detail = 'supported values: "Cluster", "Namespaced"'
            errors.append(FieldError("NotSupported", "spec.scope", spec.get("scope", ""), detail))
        errors += _versions_errors(spec.get("versions") or [], cluster)
        if old is not None and (old.get("spec") or {}).get("scope") != spec.get("scope"):
            errors.append(invalid("spec.scope", spec.get("scope"), "field is immutable"))
        return errors


def _versions_errors(versions: list[Any], cluster: Cluster) -> list[FieldError]:
    if not versions:
        return [
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        ]
    errors: list[FieldError] = []
    if sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        errors.append(
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    for i, version in enumerate(versions):
        path = f"spec.versions[{i}]"
        schema = ((version.get("schema") or {}) if isinstance(version, dict) else {}).get(
            "openAPIV3Schema"
        )
        if not isinstance(schema, dict):
            errors.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            continue
        errors += structural_errors(schema, f"{path}.schema.openAPIV3Schema", cluster, root=True)
    return errors


def structural_errors(
    node: dict[str, Any], path: str, cluster: Cluster, root: bool = False
) -> list[FieldError]:
    """Why ``node`` is not a structural schema (``structuralschema.ValidateStructural``)."""
    errors: list[FieldError] = []
    typed = (
        node.get("type")
        or node.get("x-kubernetes-int-or-string")
        or node.get("x-kubernetes-preserve-unknown-fields")
    )
    if root and node.get("type") != "object":
        what = (
            "must not be empty at the root"
            if not node.get("type")
            else "must be object at the root"
        )
        errors.append(
            required(f"{path}.type", what)
            if not node.get("type")
            else invalid(f"{path}.type", node["type"], what)
        )
    elif not typed:
        errors.append(required(f"{path}.type", "must not be empty for specified object fields"))
    if node.get("properties") and isinstance(node.get("additionalProperties"), dict):
        errors.append(
            forbidden(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        text = rule.get("rule", "") if isinstance(rule, dict) else ""
        problem = cluster.cel.compile_error(text) if text else "rule is required"
        if problem:
            errors.append(invalid(f"{path}.x-kubernetes-validations[{i}].rule", text, problem))
    props = node.get("properties") or {}
    meta = props.get("metadata")
    if root and isinstance(meta, dict):
        extra_keys = set(meta) - {"type", "properties", "description"}
        extra_props = set(meta.get("properties") or {}) - _ALLOWED_ROOT_METADATA
        if extra_keys or extra_props:
            detail = (
                "must not specify anything other than name and generateName, but metadata is "
                "implicitly specified"
            )
            errors.append(forbidden(f"{path}.properties[metadata]", detail))
    for name, sub in props.items():
        if isinstance(sub, dict) and not (root and name == "metadata"):
            errors += structural_errors(sub, f"{path}.properties[{name}]", cluster)
    if isinstance(node.get("items"), dict):
        errors += structural_errors(node["items"], f"{path}.items", cluster)
    if isinstance(node.get("additionalProperties"), dict):
        errors += structural_errors(
            node["additionalProperties"], f"{path}.additionalProperties", cluster
        )
    return errors


def crd_types(crd: Obj) -> list[ResourceType]:
    """The resource types (one per served version) a CRD defines."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        columns = tuple(
            PrinterColumn(
                name=c.get("name", ""),
                type=c.get("type", "string"),
                json_path=c.get("jsonPath", ""),
                description=c.get("description", ""),
                format=c.get("format", ""),
                priority=int(c.get("priority", 0)),
            )
            for c in version.get("additionalPrinterColumns") or []
        )
        fields = tuple(
            f.get("jsonPath", "").lstrip(".") for f in version.get("selectableFields") or []
        )
        types.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version["name"],
                plural=names.get("plural", ""),
                singular=names.get("singular") or str(names.get("kind", "")).lower(),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                generation="all",
                field_labels=fields,
                custom=True,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=columns,
                storage_version=storage,
            )
        )
    return types
