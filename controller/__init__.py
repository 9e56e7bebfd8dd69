"""The control plane: the API model, reconcile logic, platforms, and the ``klambda`` CLI."""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
