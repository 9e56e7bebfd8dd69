"""Log streams copied to stdout in pods (``kubectl logs``), without filling the pod's disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from klambda.shim.logs import LogStream, follow


async def test_follower_copies_everything_and_empties_the_file_only_when_idle(
    tmp_path: Path,
) -> None:
    stream = LogStream.open(tmp_path / "logs", "$LATEST")
    read_fd, write_fd = os.pipe()
    idle = False
    task = asyncio.create_task(follow(stream, write_fd, lambda: idle, period=0.01, keep=10))
    try:
        stream.write("START RequestId: r1\n")
        os.write(stream.fd, b"printed by the function\n")  # as the runtime writes: same fd
        await asyncio.sleep(0.1)
        assert stream.offset() > 10  # busy: kept for Tail
        idle = True
        for _ in range(500):  # idle and copied: emptied (copies run in a thread; allow load)
            if stream.offset() == 0:
                break
            await asyncio.sleep(0.01)
        assert stream.offset() == 0
        stream.write("END RequestId: r1\n")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # a final copy on the way out
        stream.close()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as out:
        copied = out.read().decode()
    assert copied == "START RequestId: r1\nprinted by the function\nEND RequestId: r1\n"
