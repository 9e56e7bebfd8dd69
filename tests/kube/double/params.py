"""Query parameters, parsed as the API server's Go conversion functions parse them.

Booleans follow ``strconv.ParseBool`` (``true``, ``True``, ``1``, ``t``...; older Python clients
send ``watch=True``); integers follow ``strconv.ParseInt``. An unparsable value is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ApiError, bad_request

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def go_int(text: str) -> int:
    if not text.lstrip("+-").isdigit():
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


@dataclass(frozen=True)
class Query:
    """The query parameters of one request that the double honours."""

    watch: bool = False
    resource_version: str = ""
    resource_version_match: str = ""
    timeout_seconds: int | None = None
    allow_watch_bookmarks: bool = False
    send_initial_events: bool | None = None
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    field_manager: str = ""
    field_validation: str = ""
    dry_run: bool = False
    force: bool = False
    propagation_policy: str = ""
    grace_period_seconds: int | None = None
    orphan_dependents: bool | None = None
    include_object: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        try:
            return cls._parse(params)
        except ValueError as e:
            raise bad_request(str(e)) from e

    @classmethod
    def _parse(cls, p: Mapping[str, str]) -> Query:
        def opt_int(name: str) -> int | None:
            return go_int(p[name]) if p.get(name, "") != "" else None

        def opt_bool(name: str) -> bool | None:
            return go_bool(p[name]) if p.get(name, "") != "" else None

        dry_run = p.get("dryRun", "")
        if dry_run not in ("", "All"):
            raise ApiError(
                400,
                "BadRequest",
                f'dryRun: Unsupported value: "{dry_run}": supported values: "All"',
            )
        validation = p.get("fieldValidation", "")
        if validation not in ("", "Ignore", "Warn", "Strict"):
            raise bad_request(
                f"fieldValidation: Unsupported value: {validation!r}: supported values: "
                '"Ignore", "Warn", "Strict"'
            )
        return cls(
            watch=bool(opt_bool("watch")),
            resource_version=p.get("resourceVersion", ""),
            resource_version_match=p.get("resourceVersionMatch", ""),
            timeout_seconds=opt_int("timeoutSeconds"),
            allow_watch_bookmarks=bool(opt_bool("allowWatchBookmarks")),
            send_initial_events=opt_bool("sendInitialEvents"),
            label_selector=p.get("labelSelector", ""),
            field_selector=p.get("fieldSelector", ""),
            limit=opt_int("limit") or 0,
            continue_token=p.get("continue", ""),
            field_manager=p.get("fieldManager", ""),
            field_validation=validation,
            dry_run=dry_run == "All",
            force=bool(opt_bool("force")),
            propagation_policy=p.get("propagationPolicy", ""),
            grace_period_seconds=opt_int("gracePeriodSeconds"),
            orphan_dependents=opt_bool("orphanDependents"),
            include_object=p.get("includeObject", ""),
        )
