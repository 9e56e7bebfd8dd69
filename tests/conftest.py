from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory users other than root can pass through (0711; tmp_path is under a 0700
    one), for code that functions run as their own users must reach."""
    path = Path(tempfile.mkdtemp(prefix="klambda-open-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)
