"""klambda's contracts: the API model (kinds, schema, ARNs, routes and how objects resolve to
them, typed reasons), the shim contract (its settings, how it is started and ended), IAM policy
and SigV4 (pure evaluation).

Every component imports this package (and ``klambda.protos``), and nothing else of the others.
Pure data, validation and decisions only: no I/O library is imported here (a lint test checks).
"""

import klambda.protos  # noqa: F401  (gRPC fork mode, before gRPC starts)
