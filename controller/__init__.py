"""The controller: reconciles Function / Version / Alias / EventSourceMapping objects into
running environments, on the local platform (``klambda up``) or on Kubernetes (the operator)."""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
