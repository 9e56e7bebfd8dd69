"""Fixtures for the Kubernetes API double's contract tests."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator

import pytest

MISSING = [m for m in ("celpy",) if importlib.util.find_spec(m) is None]
if MISSING:  # the double needs cel-python; say so in the header instead of failing collection
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header() -> str:
        return f"tests/kube skipped: {', '.join(MISSING)} not installed (pip install cel-python)"

else:
    import aiohttp

    from tests.kube.client import Kube
    from tests.kube.double import KubeApiDouble, ThreadedKubeApiDouble


@pytest.fixture
async def api() -> AsyncIterator[KubeApiDouble]:
    async with KubeApiDouble() as double:
        yield double


@pytest.fixture
async def kube(api: KubeApiDouble) -> AsyncIterator[Kube]:
    async with aiohttp.ClientSession() as session:
        yield Kube(session, api.url)


@pytest.fixture
async def crds(kube: Kube) -> Kube:
    """``kube`` with klambda's CRDs installed and served."""
    await kube.install_crds()
    return kube


@pytest.fixture
def threaded_api() -> Iterator[ThreadedKubeApiDouble]:
    with ThreadedKubeApiDouble() as double:
        yield double
