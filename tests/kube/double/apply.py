"""Server-side apply (``application/apply-patch+yaml``), approximated.

Each field manager's last applied configuration is remembered (as the API server remembers the
fields it owns in ``managedFields``); applying merges the new configuration into the live object
with the kind's list rules (``strategic.py``) and removes what the same manager applied before
but applies no longer. Not modelled: ``managedFields`` in responses, ownership conflicts between
managers (every apply behaves as ``force=true``).
"""

from __future__ import annotations

from typing import Any

from .strategic import ListRules, Path, same_item, strategic_merge


def removal_patch(
    previous: dict[str, Any], applied: dict[str, Any], rules: ListRules, path: Path = ()
) -> dict[str, Any]:
    """A strategic patch deleting what ``previous`` set and ``applied`` no longer sets."""
    out: dict[str, Any] = {}
    for key, old in previous.items():
        if not path and key in ("apiVersion", "kind"):
            continue
        if key not in applied:
            out[key] = None
            continue
        new = applied[key]
        if isinstance(old, dict) and isinstance(new, dict):
            sub = removal_patch(old, new, rules, (*path, key))
            if sub:
                out[key] = sub
        elif isinstance(old, list) and isinstance(new, list):
            _list_removals(out, key, old, new, rules, (*path, key))
    return out


def _list_removals(
    out: dict[str, Any], key: str, old: list[Any], new: list[Any], rules: ListRules, path: Path
) -> None:
    strategy, keys = rules(path)
    if strategy != "merge":
        return
    if not keys:
        gone = [x for x in old if x not in new]
        if gone:
            out[f"$deleteFromPrimitiveList/{key}"] = gone
        return
    items: list[dict[str, Any]] = []
    for item in old:
        if not isinstance(item, dict):
            continue
        ident = {k: item.get(k) for k in keys}
        match = next((n for n in new if same_item(n, item, keys)), None)
        if match is None:
            items.append({**ident, "$patch": "delete"})
        else:
            sub = removal_patch(item, match, rules, path)
            if sub:
                items.append({**ident, **sub})
    if items:
        out[key] = items


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    previous: dict[str, Any] | None,
    rules: ListRules,
) -> dict[str, Any]:
    base: dict[str, Any] = live or {}
    if previous:
        base = strategic_merge(base, removal_patch(previous, applied, rules), rules) or {}
    return strategic_merge(base, applied, rules) or {}
