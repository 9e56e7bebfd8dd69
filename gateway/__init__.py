"""The gateway: function URLs and the Lambda Invoke API, routed to shims over gRPC."""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
