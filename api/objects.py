"""API objects as the platform holds them: metadata, a typed spec, and status.

Manifests arrive as plain dicts (from YAML, kubectl, or the local CLI); ``parse_object`` checks
the envelope (apiVersion, kind, metadata.name) and the spec, and returns an ``ApiObject`` whose
``manifest`` is the defaulted form stored and served back to users.
"""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass, field
from typing import Any

from klambda.api import schema
from klambda.api.schema import FieldError, ValidationError
from klambda.api.types import API_VERSION, KINDS, name_problems
from klambda.api.types.queue import source_name_problems

CORE_KINDS = {"ConfigMap": "v1", "Secret": "v1"}
DEFAULT_NAMESPACE = "default"


@dataclass
class ApiObject:
    """One stored object. ``spec`` is typed for klambda kinds and a dict for core kinds."""

    kind: str
    name: str
    namespace: str
    spec: Any
    manifest: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def generation(self) -> int:
        return int(self.manifest["metadata"].get("generation", 0))

    @property
    def resource_version(self) -> str:
        return str(self.manifest["metadata"].get("resourceVersion", ""))

    @property
    def creation_key(self) -> tuple[str, str]:
        """Sorts objects oldest first (then by name), e.g. to decide who came first."""
        return (str(self.manifest["metadata"].get("creationTimestamp", "")), self.name)

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.manifest)
        if self.status:
            out["status"] = copy.deepcopy(self.status)
        return out


def revive(stored: dict[str, Any], status: dict[str, Any] | None = None) -> ApiObject:
    """An object as a store holds it (an API server's answer, or the local state file) back
    into an ApiObject: validated like a manifest, with its stored metadata (uid, generation,
    resourceVersion, ...) and status. Raises ValidationError as ``parse_object`` does."""
    doc = copy.deepcopy(stored)
    found = doc.pop("status", None) or {}
    obj = parse_object(doc)
    obj.manifest["metadata"] = doc.get("metadata", {})
    obj.status = status if status is not None else found
    return obj


FunctionKey = tuple[str, str]
"""(namespace, function name)"""
FUNCTION_PARTS = ("Version", "Alias", "EventSourceMapping")
"""Kinds that name a function (``spec.functionName``) and are reconciled with it."""


def function_of(obj: ApiObject) -> FunctionKey | None:
    """The function an object belongs to: itself, or the one its spec names."""
    if obj.kind == "Function":
        return (obj.namespace, obj.name)
    if obj.kind in FUNCTION_PARTS:
        return (obj.namespace, obj.spec.function_name)
    return None


class ObjectIndex:
    """Objects by key, with the lookups a per-function reconcile makes, each costing what it
    returns rather than a scan of every object: by kind and namespace, and a function's parts.

    The local store and the Kubernetes object cache both hold their objects in one.
    """

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], ApiObject] = {}
        self._scopes: dict[tuple[str, str], dict[str, ApiObject]] = {}
        self._parts: dict[tuple[str, FunctionKey], dict[str, ApiObject]] = {}

    def put(self, obj: ApiObject) -> ApiObject | None:
        """Stores ``obj`` (replacing the object with its key) and returns what it replaced."""
        old = self.pop(obj.key)
        self._objects[obj.key] = obj
        self._scopes.setdefault((obj.kind, obj.namespace), {})[obj.name] = obj
        owner = function_of(obj)
        if owner is not None and obj.kind != "Function":
            self._parts.setdefault((obj.kind, owner), {})[obj.name] = obj
        return old

    def pop(self, key: tuple[str, str, str]) -> ApiObject | None:
        obj = self._objects.pop(key, None)
        if obj is None:
            return None
        _discard(self._scopes, (obj.kind, obj.namespace), obj.name)
        owner = function_of(obj)
        if owner is not None and obj.kind != "Function":
            _discard(self._parts, (obj.kind, owner), obj.name)
        return obj

    def get(self, kind: str, namespace: str, name: str) -> ApiObject | None:
        return self._objects.get((kind, namespace, name))

    def parts(self, kind: str, function: FunctionKey) -> list[ApiObject]:
        """The Versions, Aliases or EventSourceMappings naming ``function``, by name."""
        found = self._parts.get((kind, function), {})
        return [found[name] for name in sorted(found)]

    def __len__(self) -> int:
        return len(self._objects)

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        """The objects of ``kind`` (in ``namespace``, or all), by namespace and name."""
        if namespace is not None:
            found = self._scopes.get((kind, namespace), {})
            return [found[name] for name in sorted(found)]
        scopes = sorted(ns for k, ns in self._scopes if k == kind)
        return [o for ns in scopes for o in self.list(kind, ns)]


def _discard(index: dict[Any, dict[str, ApiObject]], key: Any, name: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(name, None)
        if not bucket:
            del index[key]


def describe(doc: Any) -> str:
    """``Function "hello"``-style subject for messages about a manifest."""
    if not isinstance(doc, dict):
        return "manifest"
    kind = doc.get("kind") or "object"
    name = (
        (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    )
    return f'{kind} "{name}"' if name else str(kind)


def parse_object(doc: Any) -> ApiObject:
    """Validates a manifest dict and returns the object with defaults applied.

    Raises ValidationError naming every field at fault and the rule it breaks.
    """
    subject = describe(doc)
    if not isinstance(doc, dict):
        raise ValidationError([FieldError("<root>", "a manifest must be a mapping")], subject)
    kind = doc.get("kind")
    if kind in CORE_KINDS:
        return _parse_core(doc, subject)
    if kind not in KINDS:
        known = ", ".join(sorted([*KINDS, *CORE_KINDS]))
        raise ValidationError(
            [FieldError("kind", f"unknown kind {kind!r}; known: {known}")], subject
        )
    errors: list[FieldError] = []
    if doc.get("apiVersion") != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION!r} for kind {kind}"))
    meta = _metadata(doc, errors)
    spec: Any = None
    try:
        spec = schema.parse(KINDS[kind].spec, doc.get("spec"), "spec")
    except ValidationError as e:
        errors.extend(e.errors)
    numeric = str(meta.get("name", "")).isdigit()
    if kind == "Alias" and spec is not None and spec.name is None and numeric:
        errors.append(
            FieldError(
                "metadata.name",
                "an alias name cannot be a number (numbers name versions): set spec.name",
            )
        )
    unknown = set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"}
    errors.extend(FieldError(k, "unknown field") for k in sorted(unknown))
    if errors:
        raise ValidationError(errors, subject)
    manifest = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": meta,
        "spec": schema.dump(spec),
    }
    return ApiObject(kind, meta["name"], meta["namespace"], spec, manifest)


def _metadata(doc: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        errors.append(FieldError("metadata", "required value"))
        return {}
    check = source_name_problems if doc.get("kind") in ("Queue", "Stream") else name_problems
    errors.extend(FieldError("metadata.name", p) for p in check(meta.get("name")))
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    errors.extend(FieldError("metadata.namespace", p) for p in name_problems(namespace))
    out = {k: copy.deepcopy(v) for k, v in meta.items() if k in ("labels", "annotations")}
    out["name"] = meta.get("name")
    out["namespace"] = namespace
    return out


def _parse_core(doc: dict[str, Any], subject: str) -> ApiObject:
    """ConfigMaps (code) and Secrets (environment values): ``spec`` is their data as text."""
    errors: list[FieldError] = []
    if doc.get("apiVersion") != CORE_KINDS[doc["kind"]]:
        errors.append(FieldError("apiVersion", f"must be {CORE_KINDS[doc['kind']]!r}"))
    meta = _metadata(doc, errors)
    data = _string_map(doc, "data", errors)
    if doc["kind"] == "Secret":
        text = _decoded(data, errors)
        text.update(_string_map(doc, "stringData", errors))  # as the API server merges them
        data = {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}
    else:
        text = data
    if errors:
        raise ValidationError(errors, subject)
    manifest = {"apiVersion": "v1", "kind": doc["kind"], "metadata": meta, "data": data}
    if doc["kind"] == "Secret":
        manifest["type"] = str(doc.get("type") or "Opaque")
    return ApiObject(doc["kind"], meta["name"], meta["namespace"], text, manifest)


def _string_map(doc: dict[str, Any], field_name: str, errors: list[FieldError]) -> dict[str, str]:
    data = doc.get(field_name) or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        errors.append(FieldError(field_name, "must be a map of string to string"))
        return {}
    return dict(data)


def _decoded(data: dict[str, str], errors: list[FieldError]) -> dict[str, str]:
    out = {}
    for key, value in data.items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            errors.append(FieldError(f"data.{key}", "must be base64-encoded UTF-8 text"))
    return out
