"""Real Helm (helm-sdkpy) in a process of its own, for tests/kube/test_chart.py:

    HELM_DRIVER=memory python -m tests.kube.helm_tool install KUBECONFIG NAMESPACE CHART VALUES
    python -m tests.kube.helm_tool lint CHART

prints the action's result as JSON ({"error": ...} and exit 1 when Helm refused). A process of
its own because Helm's Go runtime reads the environment only as the process starts, and the
storage driver must be ``memory``: Helm writes its release Secrets as protobuf, which the API
double does not read."""

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
    _, kubeconfig, namespace, chart, values = argv
    config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
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
