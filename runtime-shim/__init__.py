"""The runtime shim: hosts one function version's execution environments.

It serves Lambda's Runtime API to each environment on loopback and takes invocations from the
gateway over gRPC (``klambda.protos.shim``). One shim per Kubernetes pod, or per function version
on the local platform.
"""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
