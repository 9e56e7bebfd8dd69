"""Which user a runtime runs as, and which user is at the other end of a Runtime API connection.

See ``api.isolation``: a platform that runs as root asks (``runtime_uid``) for a function's
runtimes to run under a uid of their own. The shim does so when every file the runtime needs is
readable by that user; otherwise it says why and keeps root. The Runtime API then answers only
connections whose socket that uid owns, as the kernel reports it in /proc/net/tcp (one read per
connection, not per request).
"""

from __future__ import annotations

import logging
import os
import socket

from klambda.api.isolation import blocked_for_others, runtime_files
from klambda.api.shim_config import ShimConfig

log = logging.getLogger(__name__)


def runtime_user(config: ShimConfig, command: list[str]) -> int | None:
    """The uid the runtimes will run as; None: the shim's own."""
    if config.runtime_uid < 0 or config.external_runtime:
        return None
    if os.geteuid() != 0:
        log.warning(
            "runtime_uid %d ignored: only a shim run as root switches users", config.runtime_uid
        )
        return None
    blocked = blocked_for_others([config.code_dir, *runtime_files(command)])
    if blocked is not None:
        log.warning(
            "the runtime runs as root, not as uid %d: %s is not readable by other users "
            "(install the runtime where every user can read it to isolate this function)",
            config.runtime_uid,
            blocked,
        )
        return None
    return config.runtime_uid


def peer_uid(sockname: tuple[str, int], peername: tuple[str, int]) -> int | None:
    """The uid owning the client end of an IPv4 loopback connection (None: not found)."""
    try:
        local = _hex_address(peername)
        remote = _hex_address(sockname)
        with open("/proc/net/tcp", "rb") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                    return int(fields[7])
    except (OSError, ValueError):
        return None
    return None


def _hex_address(address: tuple[str, int]) -> bytes:
    """/proc/net/tcp's spelling: the IPv4 address as a little-endian word, the port in hex."""
    packed = socket.inet_aton(address[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{address[1]:04X}".encode()
