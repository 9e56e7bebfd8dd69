"""Generated gRPC code for klambda's internal RPC (the .proto files live beside it).

Regenerate with ``python -m klambda.protos.generate``; a test proves the committed code matches.
"""

import os

# klambda forks only to exec (shims, runtimes). gRPC's fork handlers (on by default in grpcio's
# core) run in the child of every fork and crash it (SIGSEGV before exec) while a stream is open.
# Every klambda package imports this module first, before gRPC initialises.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest gateway <-> shim message: a 6 MB Lambda payload and its envelope fit."""
MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
"""gRPC options both ends of the shim contract use."""
