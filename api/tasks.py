"""Ending background tasks: the one cancel-then-await every owner of tasks uses.

Every ``create_task`` in klambda has an owner that ends it this way on shutdown: cancel, then
wait for the task to finish (it may clean up), surfacing any error other than the cancellation
in the log instead of losing it. Plain asyncio; no I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("klambda.tasks")


RECANCEL_AFTER = 5.0
"""Seconds after which a task that has not ended is cancelled again: a library may swallow a
cancellation (redis-py in a blocking read, ``wait_for`` on 3.11), and one lost cancel must not
hang a shutdown."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancels ``tasks`` and waits until each has finished; errors they end with are logged.

    If the caller itself is cancelled while waiting, that cancellation propagates."""
    everyone = [t for t in tasks if t is not None]
    pending = set(everyone)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER)
        for task in pending:
            log.warning("task %s did not end when cancelled; cancelling it again", task.get_name())
    for task in everyone:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
