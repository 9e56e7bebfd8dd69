"""Identity policies parsed once per content: a changed policy takes effect on the next call,
and the cache stays bounded."""

from __future__ import annotations

from typing import Any

from klambda.api.iam import Principal
from klambda.gateway.auth import POLICY_CACHE_SIZE, Authenticator


def policy(effect: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": effect, "Action": "lambda:InvokeFunction", "Resource": "*"}],
    }


class NoDirectory:
    def lookup(self, access_key_id: str) -> None:
        return None


def test_a_revoked_policy_is_not_served_from_the_cache() -> None:
    auth = Authenticator(NoDirectory(), "us-east-1")  # type: ignore[arg-type]
    for _ in range(20):  # each round: the Secret's policy changed, a new object was read
        allowed = auth._policies(Principal("ada", "team", (policy("Allow"),)))
        assert allowed[0].statements[0].effect == "Allow"
        denied = auth._policies(Principal("ada", "team", (policy("Deny"),)))
        assert denied[0].statements[0].effect == "Deny"


def test_the_cache_is_bounded() -> None:
    auth = Authenticator(NoDirectory(), "us-east-1")  # type: ignore[arg-type]
    for i in range(POLICY_CACHE_SIZE + 50):  # every one a different policy
        own = policy("Allow")
        own["Statement"][0]["Resource"] = f"arn:aws:lambda:us-east-1:000000000000:function:f{i}"
        auth._policies(Principal(f"user-{i}", "team", (own,)))
    assert len(auth._parsed) == POLICY_CACHE_SIZE
