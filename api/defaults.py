"""Platform defaults: the one place each default value is written.

Every settings dataclass (gateway, controller, operator, ``klambda up``, the shim's) and every
command-line flag takes its default from here, so they cannot drift apart.
"""

from __future__ import annotations

REGION = "us-east-1"
"""Region in ARNs, signatures and AWS_REGION."""
NAMESPACE = "default"
"""The namespace (account) of objects and calls that name none."""
GATEWAY_PORT = 8080
"""Port of function URLs, the Lambda API and /metrics."""
CONCURRENCY_LIMIT = 1000
"""The regional limit: invocations in flight at once across all functions (Lambda: 1,000)."""
KEEP_WARM = 300.0
"""Seconds an idle environment (and an unused version's shim or pods) is kept warm."""
ASYNC_QUEUE_LIMIT = 100_000
"""Asynchronous events one namespace may have waiting at once (more: 429)."""
SHUTDOWN_GRACE = 10.0
"""Seconds in-flight invocations get to finish when a gateway stops (below a pod's default
30 s termination grace period, so the kubelet never has to kill it)."""
PUBLIC_URL = "http://klambda-gateway"
"""Base URL of the gateway as clients reach it on Kubernetes (function URLs in status)."""

ASYNC_RETRY_DELAY = 60.0
"""Seconds before the first retry of an async event's function error (Lambda: about a minute;
the second retry waits twice as long)."""
