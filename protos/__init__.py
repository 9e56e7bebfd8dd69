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

KEEPALIVE_SECONDS = 5
"""The gateway pings each shim stream this often, and gives up on a shim that does not answer
a ping within as long again: a silent shim costs a call seconds, not its whole deadline."""
CLIENT_OPTIONS = [
    *MESSAGE_OPTIONS,
    ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_SECONDS * 1000),
    # the C core enforces a keepalive's wait through its ping timeout (grpc/grpc#39239)
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
"""The gateway's channel to a shim."""
SERVER_OPTIONS = [
    *MESSAGE_OPTIONS,
    # accept the gateway's pings (by default a server allows one per 5 minutes, then GOAWAY)
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_SECONDS * 1000 // 2),
    ("grpc.http2.max_ping_strikes", 0),
]
"""The shim's server."""
