"""Lambda event filtering for event source mappings (``FilterCriteria.Filters[].Pattern``),
pure: it decides whether a queue or stream record is delivered; dropping it (deleting an SQS
message, moving a stream's checkpoint past it) is the caller's job.

Patterns are compiled once by ``parse_filters`` (``klambda.api.event_filter_rules`` holds the
matcher tree), so matching a record re-parses nothing, and a record's ``body`` or ``data`` is
decoded at most once per call, and only when some filter names it.

What this follows, from the pages it was read in:

- Lambda's guide, "Control which events Lambda sends to your function" / "Lambda event
  filtering" (https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html,
  archived as awsdocs/aws-lambda-developer-guide doc_source/invocation-eventfiltering.md):
  filters are OR-ed and a record matching none is discarded; by default at most five filters a
  mapping (a quota that can be raised to ten: ``max_filters``); "Lambda supports the same set of
  syntax and rules as Amazon EventBridge", and its comparison-operator table (null, empty,
  equals, and, or, not/anything-but, numeric equals and range, exists, does not exist, begins
  with); "for numbers, Lambda also uses string representation. For example, 300, 300.0, and
  3.0e2 are not considered equal"; duplicate keys keep the last value; the SQS table: a
  plain-text body with a JSON ``body`` pattern, or a JSON body with a plain-string pattern,
  "Lambda drops the message", and without a ``body`` pattern only the other (metadata) fields
  are filtered; the streams table: data that is not JSON with a JSON ``data`` pattern, "Lambda
  drops the record", and a non-JSON pattern for ``data`` is refused when the mapping is created.
- "Using event filtering with an Amazon SQS event source"
  (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs-filtering.html): patterns address the
  record handed to the function, the message under ``body``.
- "Using event filtering with a Kinesis event source"
  (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-filtering.html): ``data`` is
  base64 in the record and filtered as the JSON it decodes to; patterns address the fields of
  the record's ``kinesis`` object (``{"partitionKey": ["1"], "data": {...}}``).
- ``API_Filter`` (https://docs.aws.amazon.com/lambda/latest/api/API_Filter.html): a pattern
  is at most 4096 characters. Lambda refuses a bad pattern with InvalidParameterValueException
  "Invalid filter pattern definition.", which ``FilterError`` messages begin with.
- EventBridge's operator table (https://docs.aws.amazon.com/eventbridge/latest/userguide/
  eb-create-pattern-operators.html), whose syntax Lambda says it shares: its "Pipe support"
  column (the other poller-fed integration) says no to ``wildcard`` and to ``anything-but``
  with suffix, equals-ignore-case or wildcard, and Lambda's own table lists neither, so they
  are refused; ends with (``suffix``), ``equals-ignore-case`` (alone or inside ``prefix`` or
  ``suffix``) and ``$or`` are accepted (Pipes: yes).
  ``anything-but`` with ``prefix`` is accepted too (Event Ruler's long-standing form), and so
  is ``cidr``, which AWS's own SQS filter sample uses (aws-samples/serverless-patterns,
  lambda-esm-sqs-filters-sam).

Decisions where the pages leave room: a payload is "valid JSON" when it decodes to a JSON
object (a pattern can only describe objects); an SQS body that is anything else, an array or a
bare number included, is plain text. The newest SQS and Kinesis pages say those mappings
"only support filtering on" ``body`` / ``data``; metadata filters (``attributes``,
``messageAttributes``, ``partitionKey``, ...) are still matched as the records carry them, as
the filtering guide describes, so every pattern Lambda accepts means the same here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from klambda.api import event_filter_rules as rules

DEFAULT_MAX_FILTERS: Final = 5  # Lambda's default quota per event source mapping
MAX_FILTERS_QUOTA: Final = 10  # the most a quota increase allows
MAX_PATTERN_LENGTH: Final = 4096
INVALID_PATTERN: Final = "Invalid filter pattern definition."

Source = Literal["sqs", "kinesis"]


class FilterError(ValueError):
    """A filter Lambda would refuse (InvalidParameterValueException): the message says which
    filter (``index``, counted from 0; ``None`` when the criteria as a whole are at fault) and
    why."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class Filters:
    """A mapping's compiled filters; a record is delivered when any one matches, and every
    record when there are none (no ``FilterCriteria``)."""

    patterns: tuple[str, ...] = ()
    _nodes: tuple[rules.Node, ...] = field(default=(), repr=False, compare=False)
    _top_level: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def matches_sqs(self, record: Mapping[str, Any]) -> bool:
        """Whether an SQS record (as the function gets it) passes: patterns address the record,
        ``body`` as the JSON object it holds, else as its plain text."""
        if not self._nodes:
            return True
        body = _sqs_body(record) if "body" in self._top_level else rules.MISSING
        data = rules.DataField("body", body, plain_ok=True)
        return any(rules.match_node(node, record, data) for node in self._nodes)

    def matches_kinesis(self, record: Mapping[str, Any]) -> bool:
        """Whether a Kinesis record (as the function gets it) passes: patterns address its
        ``kinesis`` object, ``data`` as the JSON object its base64 decodes to; a record whose
        data is not a JSON object fails every pattern on ``data``."""
        if not self._nodes:
            return True
        inner = record.get("kinesis")
        stream_record: Mapping[str, Any] = inner if isinstance(inner, Mapping) else {}
        payload = (
            _kinesis_data(stream_record.get("data")) if "data" in self._top_level else rules.MISSING
        )
        data = rules.DataField("data", payload, plain_ok=False)
        return any(rules.match_node(node, stream_record, data) for node in self._nodes)


def parse_filters(
    patterns: Sequence[str],
    *,
    source: Source | None = None,
    max_filters: int = DEFAULT_MAX_FILTERS,
) -> Filters:
    """Compile a mapping's ``FilterCriteria.Filters[].Pattern`` strings, or raise
    ``FilterError``. With ``source="kinesis"`` a plain (non-object) pattern on ``data`` is
    refused, as Lambda refuses it for streams when the mapping is created or updated."""
    if not 1 <= max_filters <= MAX_FILTERS_QUOTA:
        raise ValueError(f"max_filters must be 1 to {MAX_FILTERS_QUOTA}, not {max_filters}")
    if source not in (None, "sqs", "kinesis"):
        raise ValueError(f"unknown event filter source {source!r}")
    if isinstance(patterns, str | bytes):
        raise FilterError(f"{INVALID_PATTERN} Filters must be a list of pattern strings.")
    if len(patterns) > max_filters:
        raise FilterError(
            f"{INVALID_PATTERN} {len(patterns)} filters exceed the limit of {max_filters} "
            "for an event source mapping."
        )
    nodes = tuple(_compile(index, pattern, source) for index, pattern in enumerate(patterns))
    top_level = frozenset(name for node in nodes for name, _ in rules.top_level_fields(node))
    return Filters(tuple(patterns), nodes, top_level)


def _compile(index: int, pattern: object, source: Source | None) -> rules.Node:
    def refuse(reason: str) -> FilterError:
        return FilterError(f"{INVALID_PATTERN} Filter {index}: {reason}", index)

    if not isinstance(pattern, str):
        raise refuse(f"the pattern must be a string, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise refuse(f"the pattern has {len(pattern)} characters, over {MAX_PATTERN_LENGTH}")
    try:
        node = rules.compile_pattern(pattern)
    except rules.PatternError as exc:
        raise refuse(str(exc)) from None
    if source == "kinesis" and any(
        name == "data" and isinstance(sub, rules.Leaf) for name, sub in rules.top_level_fields(node)
    ):
        raise refuse("the filter pattern for data properties must be in a valid JSON format")
    return node


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        decoded = rules.loads(text)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _sqs_body(record: Mapping[str, Any]) -> object:
    """The body as matching sees it: its JSON object, else its text as it is."""
    body = record.get("body", rules.MISSING)
    if isinstance(body, str):
        decoded = _json_object(body)
        return body if decoded is None else decoded
    return body


def _kinesis_data(data: object) -> object:
    """The record's data as matching sees it: the JSON object its base64 holds, else MISSING
    (not JSON: every pattern on ``data`` fails, as Lambda drops such records)."""
    if not isinstance(data, str):
        return rules.MISSING
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return rules.MISSING
    decoded = _json_object(text)
    return rules.MISSING if decoded is None else decoded
