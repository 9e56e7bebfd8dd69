"""CEL evaluation units: schema typing of ``self``, Kubernetes' extension libraries, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.double.cel import CelEvaluator


@pytest.fixture(scope="module")
def cel() -> CelEvaluator:
    return CelEvaluator()


def rule(text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    base = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {**base, "x-kubernetes-validations": [{"rule": text}]}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("self.name.lowerAscii() == 'abc'", {"name": "ABC"}),
        ("self.name.upperAscii().startsWith('AB')", {"name": "abc"}),
        ("self.name.split('-').size() == 3", {"name": "a-b-c"}),
        ("self.name.indexOf('b') == 1 && self.name.charAt(2) == 'c'", {"name": "abc"}),
        ("self.name.replace('-', '') == 'abc'", {"name": "a-b-c"}),
        ("self.items.join(',') == 'x,y'", {"items": ["x", "y"]}),
        (
            "self.nums.isSorted() && self.nums.sum() == 6 && self.nums.max() == 3",
            {"nums": [1, 2, 3]},
        ),
        ("self.name.find('[0-9]+') == '42'", {"name": "ab42cd"}),
        ("self.all(k, k.matches('^[a-z]+$'))", {"name": 1, "items": 2}),
        ("[has(self.a), has(self.b)].filter(x, x).size() == 1", {"a": 1}),
    ],
)
def test_extension_functions(cel: CelEvaluator, text: str, value: dict[str, Any]) -> None:
    assert cel.validate(value, None, rule(text)) == []


def test_numbers_are_doubles_and_integers_ints(cel: CelEvaluator) -> None:
    schema = {
        "type": "object",
        "properties": {"weight": {"type": "number"}, "count": {"type": "integer"}},
    }
    assert (
        cel.validate(
            {"weight": 1, "count": 2}, None, rule("self.weight < 1.5 && self.count == 2", schema)
        )
        == []
    )


def test_failures_and_transition_rules(cel: CelEvaluator) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    immutable = rule("self.name == oldSelf.name", schema)
    assert cel.validate({"name": "a"}, None, immutable) == []  # no oldSelf: skipped
    [error] = cel.validate({"name": "b"}, {"name": "a"}, immutable)
    assert str(error) == '<nil>: Invalid value: "object": failed rule: self.name == oldSelf.name'
    [missing] = cel.validate({}, None, rule("self.name == 'x'", schema))
    assert "no such key: name evaluating rule: self.name == 'x'" in str(missing)


def test_messages_reasons_and_field_paths(cel: CelEvaluator) -> None:
    check = {
        "rule": "self.n > 0",
        "messageExpression": "'n must be positive, got ' + string(self.n)",
        "fieldPath": ".n",
        "reason": "FieldValueForbidden",
    }
    spec = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "x-kubernetes-validations": [check],
    }
    schema = {"type": "object", "properties": {"spec": spec}}
    [error] = cel.validate({"spec": {"n": -1}}, None, schema)
    assert str(error) == "spec.n: Forbidden: n must be positive, got -1"
    assert error.cause()["reason"] == "FieldValueForbidden"
