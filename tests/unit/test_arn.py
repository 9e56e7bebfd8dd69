from __future__ import annotations

import pytest

from klambda.api.arn import (
    FunctionRef,
    InvalidFunctionName,
    account_for,
    function_arn,
    parse_function_name,
)
from klambda.api.routes import parse_url_id, url_id


@pytest.mark.parametrize(
    ("value", "qualifier", "expected"),
    [
        ("hello", None, FunctionRef("hello")),
        ("hello:live", None, FunctionRef("hello", "live")),
        ("hello", "$LATEST", FunctionRef("hello", "$LATEST")),
        ("123456789012:function:hello:3", None, FunctionRef("hello", "3", "123456789012")),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:hello",
            "live",
            FunctionRef("hello", "live", "123456789012", "eu-west-1"),
        ),
    ],
)
def test_function_name_forms(value: str, qualifier: str | None, expected: FunctionRef) -> None:
    assert parse_function_name(value, qualifier) == expected


@pytest.mark.parametrize(
    ("value", "qualifier"),
    [("bad name", None), ("hello:live", "other"), ("hello:bad qualifier", None), ("", None)],
)
def test_bad_function_names(value: str, qualifier: str | None) -> None:
    with pytest.raises(InvalidFunctionName):
        parse_function_name(value, qualifier)


def test_accounts_are_stable_twelve_digits() -> None:
    a = account_for("default")
    assert len(a) == 12 and a.isdigit()
    assert a == account_for("default") != account_for("team-a")
    assert function_arn("us-east-1", a, "f", "2") == f"arn:aws:lambda:us-east-1:{a}:function:f:2"


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (("default", "hello", None), "hello"),
        (("default", "hello", "live"), "hello--live"),
        (("team-a", "hello", None), "hello.team-a"),
        (("team-a", "hello", "live"), "hello--live.team-a"),
    ],
)
def test_url_ids_round_trip(parts: tuple[str, str, str | None], text: str) -> None:
    namespace, name, qualifier = parts
    assert url_id(name, qualifier, namespace) == text
    assert parse_url_id(text) == parts
