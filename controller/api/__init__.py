"""The klambda API: kinds, schemas, ARNs and the routing facts shared by every component.

Pure data and validation only: no I/O. The gateway and the shim may import this package (and
``klambda.protos``) but no other part of the controller.
"""
