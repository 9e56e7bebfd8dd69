"""One Lambda filter pattern, compiled once into a matcher tree and evaluated without re-parsing
(pure; the public surface and the sources' rules live in ``klambda.api.event_filter``).

The semantics are Amazon EventBridge's, which Lambda says it shares, as its open-source engine
(Event Ruler, https://github.com/aws/event-ruler, README) defines them: keys are AND-ed, the
values of one array are OR-ed, an array in the event matches when any element does, objects in
an array are matched one element at a time (fields of two elements never combine: Ruler's
"array-consistent" matching), ``exists`` looks at leaf values only, and ``anything-but`` needs
the field to be present. Exact numbers compare by their JSON text, as Lambda's guide notes
("300, 300.0, and 3.0e2 are not considered equal"), so numbers are parsed into ``Number``,
which keeps that text; ``numeric`` compares their values.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final


class PatternError(ValueError):
    """Why a pattern is refused, and where in it (a dotted path of its keys)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"at '{path}': {reason}" if path else reason)


@dataclass(frozen=True, slots=True)
class Number:
    """A JSON number with its source text, which exact matching compares (Lambda's rule)."""

    text: str
    value: float


def _number(text: str) -> Number:
    return Number(text, float(text))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str) -> Any:
    """JSON with ``Number`` for every number (NaN and Infinity refused: they are not JSON)."""
    return json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_refuse_constant)


class _Missing:
    """The field is absent (distinct from a JSON ``null``)."""


MISSING: Final = _Missing()

# -- matching -----------------------------------------------------------------------------


def _key(value: object) -> tuple[str, object] | None:
    """What exact matching compares: the JSON type and its text (``True`` is not ``1``)."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, Number):
        return ("num", value.text)
    if isinstance(value, int | float):  # a record's own fields, as the caller built them
        return ("num", json.dumps(value))
    return None


def _numeric(value: object) -> float | None:
    if isinstance(value, Number):
        return value.value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _flatten(items: list[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def leaf_values(value: object) -> list[Any]:
    """The leaf values at a field: none when absent or an object (not a leaf), arrays crushed."""
    if isinstance(value, list):
        return [item for item in _flatten(value) if not isinstance(item, Mapping)]
    if value is MISSING or isinstance(value, Mapping):
        return []
    return [value]


class Matcher:
    """One operator matcher (prefix, numeric, ...) applied to a single leaf value."""

    __slots__ = ()

    def test(self, value: object) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Affix(Matcher):
    text: str
    suffix: bool
    ignore_case: bool

    def test(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if self.ignore_case:
            value = value.casefold()
        return value.endswith(self.text) if self.suffix else value.startswith(self.text)


@dataclass(frozen=True, slots=True)
class IgnoreCase(Matcher):
    folded: str

    def test(self, value: object) -> bool:
        return isinstance(value, str) and value.casefold() == self.folded


@dataclass(frozen=True, slots=True)
class AnythingBut(Matcher):
    """Any present value outside ``keys``, or any value not a string with ``prefix``."""

    keys: frozenset[tuple[str, object]]
    prefix: str | None = None

    def test(self, value: object) -> bool:
        if self.prefix is not None:
            return not (isinstance(value, str) and value.startswith(self.prefix))
        return _key(value) not in self.keys


@dataclass(frozen=True, slots=True)
class Numeric(Matcher):
    """A range on JSON numbers; each bound is (value, inclusive)."""

    low: tuple[float, bool] | None
    high: tuple[float, bool] | None

    def test(self, value: object) -> bool:
        number = _numeric(value)
        if number is None:
            return False
        if self.low is not None and not (
            number > self.low[0] or (self.low[1] and number == self.low[0])
        ):
            return False
        return (
            self.high is None or number < self.high[0] or (self.high[1] and number == self.high[0])
        )


@dataclass(frozen=True, slots=True)
class Cidr(Matcher):
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def test(self, value: object) -> bool:
        try:
            return isinstance(value, str) and ipaddress.ip_address(value) in self.network
        except ValueError:  # not an IP address
            return False


@dataclass(frozen=True, slots=True)
class Leaf:
    """An array of matchers: exact values as a set, operators in order, ``exists`` as flags."""

    exact: frozenset[tuple[str, object]]
    tests: tuple[Matcher, ...]
    if_present: bool = False  # {"exists": true}
    if_absent: bool = False  # {"exists": false}

    def matches(self, value: object) -> bool:
        values = leaf_values(value)
        if not values:
            return self.if_absent
        if self.if_present:
            return True
        for item in values:
            if _key(item) in self.exact or any(test.test(item) for test in self.tests):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Node:
    """An object of the pattern: every field must match, and one ``$or`` branch if any."""

    fields: tuple[tuple[str, Node | Leaf], ...]
    any_of: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class DataField:
    """The record's payload field (SQS ``body``, Kinesis ``data``) and the sources' rule on it:
    an object pattern needs a payload that decoded to a JSON object, an array pattern needs
    one that did not, and only a source with ``plain_ok`` matches an array pattern at all."""

    key: str
    value: object  # the decoded object, else the raw text (or MISSING)
    plain_ok: bool

    def matches(self, sub: Node | Leaf) -> bool:
        if isinstance(sub, Node):
            return isinstance(self.value, Mapping) and match_node(sub, self.value)
        if isinstance(self.value, Mapping) or not self.plain_ok:
            return False
        return sub.matches(self.value)


def match_node(node: Node, value: object, data: DataField | None = None) -> bool:
    """Whether ``value`` matches ``node``; ``data`` only at the record's top level."""
    if isinstance(value, list):
        items = list(_flatten(value)) or [{}]
        return any(match_node(node, item) for item in items)
    record: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    for name, sub in node.fields:
        if data is not None and name == data.key:
            if not data.matches(sub):
                return False
        elif isinstance(sub, Leaf):
            if not sub.matches(record.get(name, MISSING)):
                return False
        elif not match_node(sub, record.get(name, MISSING)):
            return False
    return not node.any_of or any(match_node(branch, value, data) for branch in node.any_of)


def top_level_fields(node: Node) -> Iterator[tuple[str, Node | Leaf]]:
    """The fields a pattern names on the record itself, ``$or`` branches included."""
    yield from node.fields
    for branch in node.any_of:
        yield from top_level_fields(branch)


# -- compiling ----------------------------------------------------------------------------

_UNSUPPORTED = "is not supported by Lambda event filtering"
_NUMERIC_OPERATORS: Final = frozenset({"=", "<", "<=", ">", ">="})


def compile_pattern(text: str) -> Node:
    """Parse and validate one pattern string, or raise ``PatternError`` saying why."""
    try:
        document = loads(text)
    except (ValueError, RecursionError) as exc:
        raise PatternError("", f"the pattern is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PatternError("", "a filter pattern must be a JSON object")
    return _compile_object(document, "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _compile_object(document: dict[str, Any], path: str) -> Node:
    if not document:
        raise PatternError(path, "empty objects are not allowed")
    fields: list[tuple[str, Node | Leaf]] = []
    any_of: tuple[Node, ...] = ()
    for key, value in document.items():  # duplicate keys: the last one wins, as in Lambda
        where = _join(path, key)
        if key == "$or":
            any_of = _compile_or(value, where)
        elif isinstance(value, dict):
            fields.append((key, _compile_object(value, where)))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, where)))
        else:
            raise PatternError(where, "a field needs an array of match values or an object")
    return Node(tuple(fields), any_of)


def _compile_or(value: object, path: str) -> tuple[Node, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise PatternError(path, "$or needs an array of at least two pattern objects")
    branches = []
    for index, branch in enumerate(value):
        if not isinstance(branch, dict):
            raise PatternError(f"{path}[{index}]", "each $or branch must be a pattern object")
        branches.append(_compile_object(branch, f"{path}[{index}]"))
    return tuple(branches)


def _compile_leaf(values: list[Any], path: str) -> Leaf:
    if not values:
        raise PatternError(path, "empty arrays are not allowed")
    exact: set[tuple[str, object]] = set()
    tests: list[Matcher] = []
    present = absent = False
    for value in values:
        if isinstance(value, dict):
            operator, argument = _operator(value, path)
            if operator == "exists":
                if not isinstance(argument, bool):
                    raise PatternError(path, "exists needs true or false")
                present, absent = present or argument, absent or not argument
            else:
                tests.append(_compile_test(operator, argument, path))
            continue
        key = _key(value)
        if key is None:
            raise PatternError(path, "match values must be strings, numbers, booleans or null")
        exact.add(key)
    return Leaf(frozenset(exact), tuple(tests), present, absent)


def _operator(value: dict[str, Any], path: str) -> tuple[str, Any]:
    if len(value) != 1:
        raise PatternError(path, "a match expression needs exactly one operator")
    ((operator, argument),) = value.items()
    return operator, argument


def _compile_test(operator: str, argument: object, path: str) -> Matcher:
    if operator in ("prefix", "suffix"):
        return _compile_affix(operator, argument, path)
    if operator == "equals-ignore-case":
        return IgnoreCase(_string(operator, argument, path).casefold())
    if operator == "anything-but":
        return _compile_anything_but(argument, path)
    if operator == "numeric":
        return _compile_numeric(argument, path)
    if operator == "cidr":
        try:
            return Cidr(ipaddress.ip_network(_string(operator, argument, path), strict=False))
        except ValueError:
            raise PatternError(path, f"cidr {argument!r} is not an IP network") from None
    if operator == "wildcard":
        raise PatternError(path, f"wildcard matching {_UNSUPPORTED}")
    raise PatternError(path, f"unrecognized match type {operator!r}")


def _string(operator: str, argument: object, path: str) -> str:
    if not isinstance(argument, str):
        raise PatternError(path, f"{operator} needs a string")
    return argument


def _compile_affix(operator: str, argument: object, path: str) -> Affix:
    suffix = operator == "suffix"
    if isinstance(argument, dict) and set(argument) == {"equals-ignore-case"}:
        text = _string(f"{operator} equals-ignore-case", argument["equals-ignore-case"], path)
        return Affix(text.casefold(), suffix, ignore_case=True)
    if not isinstance(argument, str):
        raise PatternError(path, f"{operator} needs a string or an equals-ignore-case object")
    return Affix(argument, suffix, ignore_case=False)


def _compile_anything_but(argument: object, path: str) -> AnythingBut:
    if isinstance(argument, dict):
        operator, inner = _operator(argument, path)
        if operator != "prefix":
            raise PatternError(path, f"anything-but with {operator} {_UNSUPPORTED}")
        return AnythingBut(frozenset(), _string("anything-but prefix", inner, path))
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise PatternError(path, "anything-but needs at least one value")
    if all(isinstance(v, str) for v in values) or all(isinstance(v, Number) for v in values):
        return AnythingBut(frozenset(key for v in values if (key := _key(v)) is not None))
    raise PatternError(path, "anything-but values must be all strings or all numbers")


def _compile_numeric(argument: object, path: str) -> Numeric:
    if not isinstance(argument, list) or not argument or len(argument) % 2:
        raise PatternError(path, "numeric needs [operator, number] pairs")
    low: tuple[float, bool] | None = None
    high: tuple[float, bool] | None = None
    for operator, operand in zip(argument[::2], argument[1::2], strict=True):
        if not isinstance(operator, str) or operator not in _NUMERIC_OPERATORS:
            raise PatternError(path, f"unknown numeric operator {operator!r}")
        if not isinstance(operand, Number) or not math.isfinite(operand.value):
            raise PatternError(path, f"numeric operands must be finite numbers, not {operand!r}")
        if operator == "=":
            if len(argument) != 2:
                raise PatternError(path, "numeric '=' cannot be combined with other operators")
            return Numeric((operand.value, True), (operand.value, True))
        bound = (operand.value, operator.endswith("="))
        if operator.startswith(">"):
            if low is not None:
                raise PatternError(path, "numeric allows one lower bound ('>' or '>=')")
            low = bound
        else:
            if high is not None:
                raise PatternError(path, "numeric allows one upper bound ('<' or '<=')")
            high = bound
    if low is not None and high is not None and low[0] >= high[0]:
        raise PatternError(path, "numeric lower bound must be below its upper bound")
    return Numeric(low, high)
