"""The ``klambda`` command line. Entry points only wire components together: ``klambda up``
runs the controller, the gateway and an embedded Redis in one process tree; ``klambda operator``
and ``klambda gateway`` run one component each on Kubernetes; the rest talk to a running platform.
"""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
