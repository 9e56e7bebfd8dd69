"""The gateway: function URLs and the Lambda Invoke API, routed to shims over gRPC."""
