"""Which files another user can reach, which uid a function gets, who owns a connection."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from klambda.api.isolation import UID_BASE, UID_COUNT, blocked_for_others, function_uid
from klambda.shim.identity import peer_uid


@pytest.mark.parametrize(
    ("dir_mode", "file_mode", "blocked"),
    [
        (0o755, 0o644, None),
        (0o711, 0o644, None),  # passing through is enough; listing is not needed
        (0o711, 0o755, None),
        (0o700, 0o644, "dir"),  # as /root, where pyenv puts its interpreters
        (0o755, 0o600, "file"),  # a state file
        (0o755, 0o744, "file"),  # an executable others may read but not run
    ],
)
def test_what_others_can_reach(
    open_dir: Path, dir_mode: int, file_mode: int, blocked: str | None
) -> None:
    directory = open_dir / "dir"
    directory.mkdir()
    file = directory / "file"
    file.write_text("x")
    file.chmod(file_mode)
    directory.chmod(dir_mode)
    try:
        expected = {None: None, "dir": str(directory), "file": str(file)}[blocked]
        assert blocked_for_others([str(file)]) == expected
    finally:
        directory.chmod(0o755)


def test_a_missing_file_is_blocked(tmp_path: Path) -> None:
    assert blocked_for_others([str(tmp_path / "missing")]) is not None


def test_function_uids_are_consecutive_and_bounded() -> None:
    assert [function_uid(i) for i in range(3)] == [UID_BASE, UID_BASE + 1, UID_BASE + 2]
    with pytest.raises(ValueError, match="no uid left"):
        function_uid(UID_COUNT)


def test_the_owner_of_a_loopback_connection_is_found() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()),
    ):
        accepted, peer = server.accept()
        with accepted:
            assert peer_uid(accepted.getsockname(), peer) == os.getuid()
            assert peer_uid(accepted.getsockname(), ("127.0.0.1", 1)) is None
