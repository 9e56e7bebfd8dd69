"""A shard's tumbling window (Lambda's stateful stream processing, services-kinesis-windows):
the window a mapping is in on one shard and the state its function carries through it.

Windows are cut by the records' arrival (``stream_records.window_of``). Each invocation in a
window carries the state the previous one returned; when a record of a later window comes
next, or (no record waiting) the window's end has passed, a final invocation with no records
and ``isFinalInvokeForWindow`` hands over the complete state, and the next window starts with
an empty one. A state past 1 MB cuts the window short: the final invocation also says
``isWindowTerminatedEarly``, and the same window goes on with an empty state. The window is
stored beside the shard's checkpoint and written with it in one step, so a restarted poller
goes on with the same state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from klambda.gateway.stream_records import window_fields, window_of


@dataclass
class Window:
    start: float
    end: float
    state: dict[str, Any] = field(default_factory=dict)
    cut: bool = False
    """The state grew past 1 MB: the next invocation is an early final one."""

    def encode(self) -> str:
        return json.dumps({"start": self.start, "end": self.end, "state": self.state})

    @staticmethod
    def decode(text: str | None) -> Window | None:
        if not text:
            return None
        try:
            doc = json.loads(text)
            return Window(float(doc["start"]), float(doc["end"]), dict(doc["state"]))
        except (ValueError, KeyError, TypeError):
            return None

    def fields(self, shard: str, stream_arn: str, *, final: bool) -> dict[str, Any]:
        """What an invocation in this window carries beside its records."""
        return window_fields(
            start=self.start,
            end=self.end,
            state=self.state,
            shard=shard,
            stream_arn=stream_arn,
            final=final,
            terminated_early=final and self.cut,
        )


def closes(window: Window, next_arrival: float | None, now: float) -> bool:
    """The window is over: the next record is of a later window, or (none waiting) its end
    has passed."""
    return (next_arrival if next_arrival is not None else now) >= window.end


def opening(arrivals: Sequence[float], seconds: int) -> tuple[Window, int]:
    """The window of the first record and how many of the leading records are in it (a batch
    never spans windows)."""
    start, end = window_of(arrivals[0], seconds)
    count = 0
    while count < len(arrivals) and arrivals[count] < end:
        count += 1
    return Window(start, end), count
