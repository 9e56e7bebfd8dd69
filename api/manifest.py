"""Reading manifests from files and directories (YAML or JSON, multi-document)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A file cannot be read as manifests."""


@dataclass(frozen=True)
class Document:
    data: Any
    source: Path


def manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if path.is_file():
        return [path]
    raise ManifestError(f"{path}: no such file or directory")


def load_documents(path: str | Path) -> list[Document]:
    """Every non-empty document in ``path`` (a file, or a directory searched recursively).

    Relative ``spec.code.zip`` paths are made absolute against the manifest's own directory,
    so a manifest means the same wherever the command runs.
    """
    docs: list[Document] = []
    for file in manifest_files(Path(path)):
        try:
            loaded = list(yaml.safe_load_all(file.read_text()))
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(f"{file}: cannot read: {e}") from e
        except yaml.YAMLError as e:
            raise ManifestError(f"{file}: not valid YAML: {e}") from e
        for data in loaded:
            if data is None:
                continue
            _absolute_zip(data, file.parent)
            docs.append(Document(data, file))
    return docs


def _absolute_zip(doc: Any, base: Path) -> None:
    try:
        code = doc["spec"]["code"]
        where = code["zip"]
    except (KeyError, TypeError):
        return
    if isinstance(where, str) and "://" not in where and not Path(where).is_absolute():
        code["zip"] = str((base / where).resolve())
