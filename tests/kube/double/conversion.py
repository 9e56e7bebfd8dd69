"""Converting stored objects to the version a request asked for, and back.

Custom resources use the CRD conversion strategy ``None`` (only ``apiVersion`` changes).
Events are the interesting case: ``v1`` Events and ``events.k8s.io/v1`` Events are the same
stored objects with renamed fields (``pkg/apis/events/v1/conversion.go``), so an Event a
controller records through events.k8s.io shows up in ``kubectl describe`` (core v1) and back.
"""

from __future__ import annotations

import copy
from typing import Any

from .kinds import ResourceType

Obj = dict[str, Any]

# events.k8s.io/v1 field <-> core v1 field
_EVENT_FIELDS = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def _rename(obj: Obj, pairs: tuple[tuple[str, str], ...], reverse: bool) -> Obj:
    out = copy.deepcopy(obj)
    for new_name, core_name in pairs:
        src, dst = (new_name, core_name) if not reverse else (core_name, new_name)
        if src in out:
            out[dst] = out.pop(src)
    return out


def _is_events_group(rtype: ResourceType) -> bool:
    return rtype.group == "events.k8s.io" and rtype.plural == "events"


def to_storage(obj: Obj, rtype: ResourceType) -> Obj:
    """The stored form of ``obj`` received through ``rtype``."""
    if _is_events_group(rtype):
        out = _rename(obj, _EVENT_FIELDS, reverse=False)
        series = out.pop("series", None)
        if isinstance(series, dict):
            out["series"] = {
                "count": series.get("count"),
                "lastObservedTime": series.get("lastObservedTime"),
            }
        out["apiVersion"] = "v1"
        return out
    out = copy.deepcopy(obj)
    if rtype.custom and rtype.storage_version:
        out["apiVersion"] = f"{rtype.group}/{rtype.storage_version}"
    else:
        out["apiVersion"] = rtype.api_version
    out["kind"] = rtype.kind
    return out


def from_storage(obj: Obj, rtype: ResourceType) -> Obj:
    """``obj`` as ``rtype``'s version shows it, with kind and apiVersion set."""
    out = (
        _rename(obj, _EVENT_FIELDS, reverse=True) if _is_events_group(rtype) else copy.deepcopy(obj)
    )
    out["apiVersion"] = rtype.api_version
    out["kind"] = rtype.kind
    return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}
