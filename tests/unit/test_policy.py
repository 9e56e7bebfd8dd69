"""Policy evaluation, one table row per rule."""

from __future__ import annotations

from typing import Any

import pytest

from klambda.api.policy import (
    Ask,
    Caller,
    PolicyError,
    evaluate,
    parse_policy,
)

A, B = "111111111111", "222222222222"
ALICE = Caller(f"arn:aws:iam::{A}:user/alice", A)
BOB = Caller(f"arn:aws:iam::{B}:user/bob", B)
ANON = Caller(None, None)
FN = f"arn:aws:lambda:us-east-1:{A}:function:hello"


def ident(*statements: dict[str, Any]) -> Any:
    return parse_policy(
        {"Version": "2012-10-17", "Statement": list(statements)}, resource_policy=False
    )


def res(*statements: dict[str, Any]) -> Any:
    return parse_policy({"Statement": list(statements)}, resource_policy=True)


def allow(
    action: str = "lambda:InvokeFunction", resource: str = FN, **extra: Any
) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str = "lambda:*", resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def ask(
    caller: Caller = ALICE,
    action: str = "lambda:InvokeFunction",
    resource: str = FN,
    **context: Any,
) -> Ask:
    return Ask(caller, action, resource, A, context)


CASES = [
    # (name, identity policies, resource policy, ask, allowed)
    ("nothing allows", [], None, ask(), False),
    ("identity allows", [ident(allow())], None, ask(), True),
    ("action wildcard", [ident(allow("lambda:Invoke*"))], None, ask(), True),
    ("action is case-insensitive", [ident(allow("LAMBDA:invokefunction"))], None, ask(), True),
    ("other action", [ident(allow("lambda:GetFunction"))], None, ask(), False),
    (
        "resource wildcard",
        [ident(allow(resource="arn:aws:lambda:*:*:function:hel*"))],
        None,
        ask(),
        True,
    ),
    ("other function", [ident(allow(resource=FN + "x"))], None, ask(), False),
    (
        "unqualified grant does not cover an alias",
        [ident(allow())],
        None,
        ask(resource=FN + ":live"),
        False,
    ),
    (
        "qualified wildcard covers aliases",
        [ident(allow(resource=FN + ":*"))],
        None,
        ask(resource=FN + ":live"),
        True,
    ),
    (
        "NotAction",
        [ident({"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"})],
        None,
        ask(),
        True,
    ),
    (
        "NotResource",
        [ident({"Effect": "Allow", "Action": "*", "NotResource": FN})],
        None,
        ask(),
        False,
    ),
    ("explicit deny wins over allow", [ident(allow(), deny())], None, ask(), False),
    (
        "resource deny wins over identity allow",
        [ident(allow())],
        res(deny(Principal="*")),
        ask(),
        False,
    ),
    (
        "same account: resource policy alone",
        [],
        res(allow(Principal={"AWS": ALICE.arn})),
        ask(),
        True,
    ),
    ("same account: account principal", [], res(allow(Principal={"AWS": A})), ask(), True),
    (
        "cross account: resource alone is not enough",
        [],
        res(allow(Principal={"AWS": B})),
        ask(BOB),
        False,
    ),
    ("cross account: identity alone is not enough", [ident(allow())], None, ask(BOB), False),
    (
        "cross account: both allow",
        [ident(allow())],
        res(allow(Principal={"AWS": f"arn:aws:iam::{B}:root"})),
        ask(BOB),
        True,
    ),
    ("anonymous needs a public statement", [], res(allow(Principal="*")), ask(ANON), True),
    (
        "anonymous refused by a principal-scoped statement",
        [],
        res(allow(Principal={"AWS": A})),
        ask(ANON),
        False,
    ),
    (
        "StringEquals holds",
        [ident(allow(Condition={"StringEquals": {"aws:PrincipalArn": ALICE.arn}}))],
        None,
        ask(**{"aws:PrincipalArn": ALICE.arn}),
        True,
    ),
    (
        "StringEquals fails",
        [ident(allow(Condition={"StringEquals": {"aws:PrincipalArn": "x"}}))],
        None,
        ask(**{"aws:PrincipalArn": ALICE.arn}),
        False,
    ),
    (
        "StringLike",
        [ident(allow(Condition={"StringLike": {"aws:PrincipalArn": "*:user/ali*"}}))],
        None,
        ask(**{"aws:PrincipalArn": ALICE.arn}),
        True,
    ),
    (
        "IpAddress in range",
        [ident(allow(Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))],
        None,
        ask(**{"aws:SourceIp": "127.0.0.1"}),
        True,
    ),
    (
        "IpAddress out of range",
        [ident(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))],
        None,
        ask(**{"aws:SourceIp": "127.0.0.1"}),
        False,
    ),
    (
        "NotIpAddress deny",
        [ident(allow(), deny(Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))],
        None,
        ask(**{"aws:SourceIp": "127.0.0.1"}),
        False,
    ),
    (
        "Bool",
        [ident(allow(Condition={"Bool": {"aws:SecureTransport": False}}))],
        None,
        ask(**{"aws:SecureTransport": "false"}),
        True,
    ),
    (
        "missing key fails a condition",
        [ident(allow(Condition={"StringEquals": {"aws:username": "a"}}))],
        None,
        ask(),
        False,
    ),
    (
        "IfExists passes on a missing key",
        [ident(allow(Condition={"StringEqualsIfExists": {"aws:username": "a"}}))],
        None,
        ask(),
        True,
    ),
    (
        "URL auth type condition",
        [],
        res(
            allow(
                "lambda:InvokeFunctionUrl",
                Principal="*",
                Condition={"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
            )
        ),
        ask(ANON, "lambda:InvokeFunctionUrl", **{"lambda:FunctionUrlAuthType": "NONE"}),
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "identity", "resource", "request_", "allowed"), CASES, ids=[c[0] for c in CASES]
)
def test_rules(name: str, identity: list[Any], resource: Any, request_: Ask, allowed: bool) -> None:
    assert evaluate(identity, resource, request_).allowed is allowed


def test_denial_reasons_name_the_policy_kind() -> None:
    assert (
        "explicit deny in a resource-based" in evaluate([], res(deny(Principal="*")), ask()).reason
    )
    assert (
        "no identity-based policy allows the lambda:InvokeFunction"
        in evaluate([], None, ask()).reason
    )


@pytest.mark.parametrize(
    ("doc", "resource_policy", "message"),
    [
        ({}, False, "Statement must be a non-empty list"),
        (
            {"Statement": [{"Effect": "Maybe", "Action": "x", "Resource": "*"}]},
            False,
            "Effect must be",
        ),
        ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, False, "exactly one of Action"),
        ({"Statement": [{"Effect": "Allow", "Action": "x"}]}, False, "needs Resource"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "x", "Resource": "*"}]},
            True,
            "needs a Principal",
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "x",
                        "Resource": "*",
                        "Condition": {"StringSorta": {"k": "v"}},
                    }
                ]
            },
            False,
            "unsupported condition",
        ),
    ],
)
def test_malformed_policies(doc: Any, resource_policy: bool, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(doc, resource_policy=resource_policy)
