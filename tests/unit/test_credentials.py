"""Attack: a caller's credentials reaching a function (which could replay them), and a
ServiceAccount taken for the access-key user of the same name."""

from __future__ import annotations

from klambda.api.iam import Principal
from klambda.api.policy import Ask, Caller, evaluate, parse_policy
from klambda.gateway.url_event import HttpRequest, build_event

HEADERS = [
    ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA.../aws4_request, Signature=abc"),
    ("X-Amz-Security-Token", "session-token"),
    ("X-Amz-Date", "20261201T000000Z"),
    ("Content-Type", "application/json"),
]


def event(authorizer: dict[str, object] | None, headers: list[tuple[str, str]]) -> dict:
    req = HttpRequest("POST", "/", "", headers, b"{}", "10.0.0.9")
    return build_event(req, request_id="r", url_id="u", account_id="1", authorizer=authorizer)


def test_an_iam_callers_credentials_never_reach_the_function() -> None:
    got = event({"iam": {"accessKey": "AKIA..."}}, HEADERS)["headers"]
    assert "authorization" not in got and "x-amz-security-token" not in got
    assert got["x-amz-date"] == "20261201T000000Z" and got["content-type"] == "application/json"
    bearer = event({"iam": {}}, [("Authorization", "Bearer eyJhbGciOi...")])["headers"]
    assert "authorization" not in bearer


def test_a_public_url_keeps_the_callers_own_authorization_header() -> None:
    """Without AWS_IAM the header was not the platform's credential: the function's own
    scheme may need it (Lambda passes it on)."""
    assert event(None, HEADERS)["headers"]["authorization"].startswith("AWS4-HMAC-SHA256")


def test_service_accounts_and_users_of_one_name_are_different_principals() -> None:
    user = Principal("ci", "team-a")
    account = Principal("ci", "team-a", service_account=True)
    assert user.arn.endswith(":user/ci")
    assert account.arn.endswith(":role/kubernetes-serviceaccount/ci")
    assert user.user_id != account.user_id
    resource = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": user.arn},
                    "Action": "lambda:InvokeFunction",
                    "Resource": "*",
                }
            ],
        },
        resource_policy=True,
    )

    def allowed(p: Principal) -> bool:
        ask = Ask(Caller(p.arn, p.account), "lambda:InvokeFunction", "arn:fn", p.account)
        return evaluate([], resource, ask).allowed

    assert allowed(user) and not allowed(account)
