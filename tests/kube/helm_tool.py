"""Real Helm (helm-sdkpy) in a process of its own, for tests/kube/test_chart.py:

    python -m tests.kube.helm_tool install|upgrade KUBECONFIG NAMESPACE CHART VALUES
    python -m tests.kube.helm_tool uninstall KUBECONFIG NAMESPACE
    python -m tests.kube.helm_tool lint CHART

prints the action's result as JSON ({"error": ...} and exit 1 when Helm refused). A process of
its own, so that Helm's Go runtime (which reads the environment only as the process starts)
gets the environment the test chooses, and blocking calls stay off the loop the API double
serves on. Releases are kept as Secrets (Helm's default), which Helm writes as protobuf."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def _run(argv: list[str]) -> dict[str, Any]:
    import helm_sdkpy as helm

    if argv[0] == "lint":
        report: dict[str, Any] = await helm.Lint(helm.Configuration()).run(argv[1])
        return report
    if argv[0] == "uninstall":
        config = helm.Configuration(namespace=argv[2], kubeconfig=argv[1])
        removed: dict[str, Any] = await helm.Uninstall(config).run("klambda", wait=False)
        return removed
    action, kubeconfig, namespace, chart, values = argv
    config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
    if action == "upgrade":
        upgraded: dict[str, Any] = await helm.Upgrade(config).run(
            "klambda", chart, values=json.loads(values), wait=False, timeout=60
        )
        return upgraded
    release: dict[str, Any] = await helm.Install(config).run(
        "klambda", chart, values=json.loads(values), wait=False, timeout=60, create_namespace=True
    )
    return release


def main() -> int:
    try:
        out = asyncio.run(_run(sys.argv[1:]))
    except Exception as e:  # Helm's refusal, for the test to read
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
