"""Attack: a namespace named to collide with another's account id (12 digits derived from the
name; this pair was found by a birthday search over 1.9 million names, 4.6 s of CPU)."""

from __future__ import annotations

import pytest

from klambda.api.arn import AccountIds, account_for
from klambda.api.iam import Principal
from klambda.api.policy import Ask, Caller, evaluate, parse_policy
from klambda.api.reasons import Reason
from klambda.gateway.auth import Identity, authorize
from klambda.gateway.errors import AccessDenied
from tests.unit.test_function_reconciler import function, world

VICTIM, THIEF = "ns1a74c8", "ns1c82ec"
ALLOW_ALL = parse_policy(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}],
    },
    resource_policy=False,
)


def test_the_pair_collides() -> None:
    assert account_for(VICTIM) == account_for(THIEF) == "426077111954"


def test_same_account_means_same_namespace_not_same_id() -> None:
    """Lambda lets a same-account identity policy alone allow; the thief's id is the victim's,
    its namespace is not."""
    thief = Principal("mallory", THIEF)
    resource = f"arn:aws:lambda:us-east-1:{account_for(VICTIM)}:function:payroll"
    ask = Ask(
        Caller(thief.arn, thief.account, thief.namespace),
        "lambda:InvokeFunction",
        resource,
        account_for(VICTIM),
        {},
        VICTIM,
    )
    assert not evaluate([ALLOW_ALL], None, ask).allowed
    with pytest.raises(AccessDenied):
        authorize(
            Identity(thief, "AKIA", (ALLOW_ALL,)),
            "lambda:InvokeFunction",
            resource,
            account_for(VICTIM),
            None,
            {},
            VICTIM,
        )
    mine = Principal("alice", VICTIM)  # the victim's own principal still may
    ask = Ask(Caller(mine.arn, mine.account, VICTIM), ask.action, resource, ask.resource_account,
              {}, VICTIM)  # fmt: skip
    assert evaluate([ALLOW_ALL], None, ask).allowed


def test_the_registry_names_the_other_namespace() -> None:
    ids = AccountIds()
    assert ids.update(VICTIM, "payroll", True) == set()
    assert ids.collision(VICTIM) is None
    assert ids.update(THIEF, "x", True) == {VICTIM, THIEF}
    assert ids.collision(VICTIM) == THIEF and ids.collision(THIEF) == VICTIM
    assert ids.namespaces(account_for(VICTIM)) == [VICTIM, THIEF]
    assert ids.update(THIEF, "x", False) == {VICTIM, THIEF}
    assert ids.collision(VICTIM) is None


async def test_colliding_namespaces_are_refused_until_one_is_renamed() -> None:
    w = world()
    payroll = function("payroll")
    payroll.manifest["metadata"]["namespace"] = payroll.namespace = VICTIM
    await w.store.apply(payroll)
    await w.reconcile((VICTIM, "payroll"))
    assert (VICTIM, "payroll", "$LATEST") in w.platform.shims
    thief = function("x")
    thief.manifest["metadata"]["namespace"] = thief.namespace = THIEF
    await w.store.apply(thief)
    await w.reconcile((THIEF, "x"))
    assert (VICTIM, "payroll") in w.queued  # its namespace's standing changed
    await w.reconcile((VICTIM, "payroll"))
    for ns, name in ((VICTIM, "payroll"), (THIEF, "x")):
        status = w.store.get("Function", ns, name).status
        ready = status["conditions"][0]
        assert (ready["status"], ready["reason"]) == ("False", Reason.ACCOUNT_ID_COLLISION)
        assert "426077111954" in ready["message"]
        route = w.routes.published[(ns, name)].versions["$LATEST"]
        assert route.problem_type == "ResourceConflictException" and not route.endpoints
    assert w.platform.shims == {}  # nothing of either runs
    w.queued.clear()
    await w.store.delete("Function", THIEF, "x")
    await w.reconcile((THIEF, "x"))
    assert (VICTIM, "payroll") in w.queued
    await w.reconcile((VICTIM, "payroll"))
    ready = w.store.get("Function", VICTIM, "payroll").status["conditions"][0]
    assert ready["status"] == "True"


def test_a_principal_of_a_colliding_namespace_is_refused_even_without_functions() -> None:
    """A policy naming the victim's account id would match the thief's principals too."""
    from klambda.gateway.auth import Authenticator

    ids = AccountIds()
    ids.update(VICTIM, "payroll", True)
    auth = Authenticator(directory=None, region="us-east-1", accounts=ids)  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match="426077111954"):
        auth._identity(Principal("mallory", THIEF), "AKIA")
    assert auth._identity(Principal("alice", VICTIM), "AKIA").principal.name == "alice"
