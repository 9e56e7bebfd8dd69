"""The code base stays ruff-clean (the rules live in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_ruff_is_clean(repo_root: Path) -> None:
    if (
        shutil.which("ruff") is None
        and subprocess.run(
            [sys.executable, "-m", "ruff", "--version"], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold(repo_root: Path) -> None:
    """The layers of docs/architecture.md: components import only the contracts (klambda.api,
    klambda.protos) and shared Kubernetes plumbing (klambda.kube), never each other; pure
    decision modules import no I/O library. The contracts live in pyproject.toml."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed")
    result = subprocess.run(
        [str(lint), "--config", "pyproject.toml", "--no-cache"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


PACKAGES = {
    "api": "api",
    "kube": "kube",
    "controller": "controller",
    "gateway": "gateway",
    "shim": "runtime-shim",
    "cli": "cli",
    "protos": "protos",
}


def test_mypy_is_clean(repo_root: Path, tmp_path: Path) -> None:
    """Type hints everywhere and consistent (the settings live in pyproject.toml)."""
    if subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode:
        pytest.skip("mypy is not installed")
    tree = tmp_path / "klambda"
    tree.mkdir()
    for package, folder in PACKAGES.items():
        (tree / package).symlink_to(repo_root / folder, target_is_directory=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(repo_root / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *(arg for package in PACKAGES for arg in ("-p", f"klambda.{package}")),
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
