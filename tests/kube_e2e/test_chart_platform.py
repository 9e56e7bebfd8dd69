"""The path a user takes, minus container images: ``helm install`` the chart (real Helm) on the
API double, its operator and gateway Deployments run as a kubelet would run them
(``chart_platform.py``), apply examples/hello.yaml, and get HTTP 200 from the function URL
through the gateway Service, with the function's pods run by the process kubelet.

The operator and the gateway run with their ServiceAccounts' tokens, so the double authorizes
every request by the chart's Roles; after a tour of everything they do (``rbac_tour.py``),
neither was refused anything, and neither is granted anything it did not use.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.kube_e2e.test_operator_e2e import REPO, eventually

pytest.importorskip("helm_sdkpy", reason="helm-sdkpy is not installed")
from tests.kube.test_chart import NAMESPACE
from tests.kube_e2e.chart_platform import ACCOUNTS, chart_platform
from tests.kube_e2e.rbac_tour import rbac_tour, rbac_use


async def test_the_charts_operator_and_gateway_serve_a_function(tmp_path: Path) -> None:
    async with chart_platform(tmp_path) as p:
        await p.apply(REPO / "examples/hello.yaml")
        function_url = f"{p.gateway_url}/lambda-url/hello/?name=ada"

        async def served() -> str | None:
            async with (
                aiohttp.ClientSession() as s,
                s.get(function_url, timeout=aiohttp.ClientTimeout(total=30)) as r,
            ):
                return await r.text() if r.status == 200 else None

        body = await eventually(served, 90, "hello through the chart's gateway: " + p.logs())
        assert "ada" in body
        await rbac_tour(p.client, p.kubectl, p.gateway_url)
        await p.platform.stop()  # the operator hands its Lease back: an update
        for account in ACCOUNTS:
            user = f"system:serviceaccount:{NAMESPACE}:{account}"
            refused, unused = rbac_use(p.api.cluster.authorizer, user, NAMESPACE)
            assert not refused, f"{account} was refused: {refused}"
            assert not unused, f"{account}'s rules grant what it never used: {unused}"
