"""The data path between a gateway and a shim: the .proto's InvokeRequest and InvokeResponse as
length-prefixed frames on one plain TCP connection, instead of a gRPC stream.

Measured on these machines (``bench/bench_shim_hop.py``), a gRPC bidirectional stream carries
~12,000 messages/s with 16 in flight and costs ~230 us a round trip; the same messages framed
on a socket carry ~10x as many at a third of the round trip. gRPC stays for control (Status,
Provision); the messages, and so the contract, are the .proto's.

A frame is a 4-byte big-endian length (of what follows), one byte of kind, and the message:

- HELLO (gateway first): ``StreamHello`` with the version's caller token; the shim answers
  WELCOME (``StreamWelcome``, accepted or not, then closes when not) before anything else.
- INVOKE / ANSWER: an ``InvokeRequest`` / ``InvokeResponse``, matched by request_id, answered in
  completion order.
- PING / PONG (empty): the gateway pings a quiet connection; a shim that does not answer within
  ``KEEPALIVE_SECONDS`` is given up on (a frozen shim costs a call seconds, not its deadline).
"""

from __future__ import annotations

import struct

from klambda.protos import KEEPALIVE_SECONDS, MAX_MESSAGE_BYTES

HELLO, WELCOME, INVOKE, ANSWER, PING, PONG = range(1, 7)
KINDS = frozenset((HELLO, WELCOME, INVOKE, ANSWER, PING, PONG))
_HEAD = struct.Struct(">IB")
HEAD_BYTES = _HEAD.size

__all__ = ["KEEPALIVE_SECONDS", "FrameError", "FrameReader", "frame"]


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol: the connection ends."""


def frame(kind: int, body: bytes = b"") -> bytes:
    """One frame, ready to write."""
    return _HEAD.pack(len(body) + 1, kind) + body


class FrameReader:
    """Splits received bytes into (kind, body) frames; holds a partial frame until the rest
    arrives. Raises FrameError on an unknown kind or a frame over the message limit."""

    __slots__ = ("_buffer", "limit")

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, bytes]] = []
        start, end = 0, len(buffer)
        while end - start >= HEAD_BYTES:
            size, kind = _HEAD.unpack_from(buffer, start)
            if kind not in KINDS or size < 1 or size > self.limit + 1:
                raise FrameError(f"not a shim frame (kind {kind}, {size} bytes)")
            stop = start + 4 + size
            if stop > end:
                break
            out.append((kind, bytes(buffer[start + HEAD_BYTES : stop])))
            start = stop
        if start:
            del buffer[:start]
        return out
