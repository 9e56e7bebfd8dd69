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


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancels ``tasks`` and waits until each has finished; errors they end with are logged.

    If the caller itself is cancelled while waiting, that cancellation propagates."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
