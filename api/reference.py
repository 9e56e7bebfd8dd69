"""The manifest reference (``docs/reference/manifests.md``), generated from the API classes.

Regenerate: ``python -m klambda.api.reference > docs/reference/manifests.md``;
a test fails when the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from klambda.api import schema
from klambda.api.types import API_VERSION, KINDS


def _type(prop: dict[str, Any]) -> str:
    t = prop.get("type", "")
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if t == "array":
        return f"list of {_type(prop['items'])}"
    if t == "object" and "additionalProperties" in prop:
        return f"map of string to {_type(prop['additionalProperties'])}"
    return t


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    if "minimum" in prop and "maximum" in prop:
        parts.append(f"{prop['minimum']} to {prop['maximum']}")
    elif "minimum" in prop:
        parts.append(f"≥ {prop['minimum']}")
    elif "maximum" in prop:
        parts.append(f"≤ {prop['maximum']}")
    for key, label in (
        ("maxLength", "≤ {} chars"),
        ("minLength", "≥ {} chars"),
        ("maxItems", "≤ {} items"),
        ("maxProperties", "≤ {} entries"),
    ):
        if key in prop:
            parts.append(label.format(prop[key]))
    if "pattern" in prop:
        parts.append(f"pattern `{prop['pattern']}`")
    return ", ".join(parts)


def _rows(obj: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, prop in obj.get("properties", {}).items():
        path = f"{prefix}.{name}"
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        req = "yes" if name in required else ""
        desc = prop.get("description", "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type(prop)} | {req} | {default} | {_limits(prop)} | {desc} |")
        for rule in prop.get("x-kubernetes-validations", []):
            rows.append(f"| | | | | rule | {rule['message']} |")
        if prop.get("type") == "object" and "properties" in prop:
            rows += _rows(prop, path, set(prop.get("required", [])))
        if prop.get("type") == "array" and "properties" in prop.get("items", {}):
            rows += _rows(prop["items"], path + "[]", set(prop["items"].get("required", [])))
    return rows


def render() -> str:
    out = [
        "# Manifest reference",
        "",
        "Generated from the API model by `python -m klambda.api.reference`; the CRDs",
        "in `charts/klambda/crds/` come from the same model. `klambda apply` and the Kubernetes",
        "API server enforce the same defaults and limits.",
        "",
    ]
    for kind in KINDS.values():
        spec = schema.openapi(kind.spec)
        out += [
            f"## {kind.kind}",
            "",
            f"`apiVersion: {API_VERSION}`, `kind: {kind.kind}`; plural `{kind.plural}`, short "
            f"name{'s' if len(kind.short_names) > 1 else ''} "
            + ", ".join(f"`{n}`" for n in kind.short_names)
            + ".",
            "",
            spec.get("description", ""),
            "",
            "| field | type | required | default | limits | description |",
            "|---|---|---|---|---|---|",
            *_rows(spec, "spec", set(spec.get("required", []))),
        ]
        for rule, message in getattr(kind.spec, "__cel__", ()):
            out.append(f"| `spec` | | | | rule | {message} (`{rule}`) |")
        if kind.status is not None:
            status = schema.openapi(kind.status)
            out += [
                "",
                f"### {kind.kind} status",
                "",
                "| field | type | description |",
                "|---|---|---|",
            ]
            out += [
                f"| `status.{name}` | {_type(p)} | {p.get('description', '')} |"
                for name, p in status["properties"].items()
            ]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
