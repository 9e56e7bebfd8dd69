"""The objects that carry a version's code into its pods (pure).

Small text code rides in the pod template's own annotations (a downwardAPI volume mounts it);
anything else goes into an immutable ConfigMap named by its CodeSha256 and shared by every
version with that code (each one an owner, so it goes with the last of them).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from klambda.kube import names

Manifest = dict[str, Any]


@dataclass(frozen=True)
class CodeFiles:
    """Code as a ConfigMap holds it: UTF-8 text in ``data``, anything else base64 in
    ``binaryData`` (keys may not hold '/'), and the volume items putting each file at its path."""

    data: dict[str, str]
    binary_data: dict[str, str]
    items: list[dict[str, str]]


def code_files(files: Mapping[str, bytes]) -> CodeFiles:
    data, binary, items = {}, {}, []
    for i, path in enumerate(sorted(files)):
        key = f"f{i}"
        try:
            data[key] = files[path].decode()
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(files[path]).decode()
        items.append({"key": key, "path": path})
    return CodeFiles(data, binary, items)


ANNOTATED_CODE_LIMIT = 32 * 1024
"""Text code up to this many bytes travels in the pod template's own annotations, mounted by a
downwardAPI volume: no code ConfigMap, one write less per version (annotations may hold 256 KiB
in all). Larger or binary code goes into a ConfigMap."""


CODE_ANNOTATION_PREFIX = "code.klambda.io/"


def annotated_code(files: Mapping[str, bytes]) -> CodeFiles | None:
    """``files`` as pod annotations (``data``: annotation key -> text) and their volume
    items, or None when they do not fit (binary, or over ANNOTATED_CODE_LIMIT)."""
    if sum(len(v) for v in files.values()) > ANNOTATED_CODE_LIMIT:
        return None
    stored = code_files(files)
    if stored.binary_data:
        return None
    data = {f"{CODE_ANNOTATION_PREFIX}{k}": v for k, v in stored.data.items()}
    return CodeFiles(data, {}, stored.items)


def code_volume(
    code_config_map: str, code_items: list[dict[str, str]], annotated: bool
) -> Manifest:
    """The pod's /var/task: the code ConfigMap's items, or (``annotated``) its own annotations."""
    if not annotated:
        return {
            "name": "code",
            "configMap": {"name": code_config_map, "items": code_items, "defaultMode": 0o555},
        }
    return {
        "name": "code",
        "downwardAPI": {
            "defaultMode": 0o555,
            "items": [
                {
                    "path": item["path"],
                    "fieldRef": {"fieldPath": _annotation_field(item["key"])},
                }
                for item in code_items
            ],
        },
    }


def _annotation_field(key: str) -> str:
    return f"metadata.annotations['{CODE_ANNOTATION_PREFIX}{key}']"


def config_map_bytes(files: Mapping[str, bytes]) -> int:
    """How many bytes the code takes in its ConfigMap (binary files grow by a third)."""
    stored = code_files(files)
    return sum(len(v.encode()) for v in stored.data.values()) + sum(
        len(v) for v in stored.binary_data.values()
    )


def make_code_config_map(
    namespace: str, sha256: str, files: Mapping[str, bytes], owner: dict[str, Any]
) -> Manifest:
    """Shared by every version with this code, so each is an owner and none the controller:
    the ConfigMap goes when the last of them does."""
    stored = code_files(files)
    owner = shared_owner(owner)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.code_config_map_name(sha256),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": names.MANAGED_BY},
            "ownerReferences": [owner],
            "annotations": {
                "klambda.io/code-sha256": sha256,
                "klambda.io/code-items": json.dumps(stored.items),
            },
        },
        "immutable": True,
        "data": stored.data,
        **({"binaryData": stored.binary_data} if stored.binary_data else {}),
    }


def shared_owner(owner: dict[str, Any]) -> dict[str, Any]:
    return {**owner, "controller": False}


def with_owner(refs: list[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``refs`` plus ``owner`` as a shared owner; None when it is already there."""
    if any(r.get("uid") == owner.get("uid") for r in refs):
        return None
    return [*refs, shared_owner(owner)]
