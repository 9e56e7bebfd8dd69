"""Principals and access keys: who may call, with which identity policies.

A principal is an IAM-user-like identity in one namespace (= account), with access keys for
SigV4 and identity policies (IAM JSON). Kubernetes keeps them in Secrets; the local platform in
its data dir. Secrets never appear in logs or listings.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Protocol

from klambda.api.arn import account_for
from klambda.api.policy import Policy, parse_policy

ADMIN_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


SERVICE_ACCOUNT_PATH = "kubernetes-serviceaccount"
"""The IAM path of ServiceAccount principals' role ARNs."""


@dataclass(frozen=True)
class Principal:
    name: str
    namespace: str
    policies: tuple[dict[str, Any], ...] = ()
    service_account: bool = False
    """A Kubernetes ServiceAccount (by its token), not an access-key user."""

    @property
    def account(self) -> str:
        return account_for(self.namespace)

    @property
    def arn(self) -> str:
        """``user/<name>`` for access keys; ServiceAccounts are roles on their own path, so a
        policy naming user ``ci`` never matches the ServiceAccount ``ci`` (or the reverse)."""
        if self.service_account:
            return f"arn:aws:iam::{self.account}:role/{SERVICE_ACCOUNT_PATH}/{self.name}"
        return f"arn:aws:iam::{self.account}:user/{self.name}"

    @property
    def user_id(self) -> str:
        """A stable, opaque id (AWS's AIDA... user ids, AROA... role ids)."""
        prefix = "AROA" if self.service_account else "AIDA"
        return prefix + self.account + self.name.upper().replace("-", "")[:12]

    def parsed_policies(self) -> list[Policy]:
        return [parse_policy(p, resource_policy=False) for p in self.policies]


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    principal: str
    """``namespace/name`` of the principal the key belongs to."""
    created: str = ""


class Directory(Protocol):
    """Where the gateway looks up keys and their principals."""

    def lookup(self, access_key_id: str) -> tuple[AccessKey, Principal] | None: ...


def new_key_pair(principal: str, created: str) -> AccessKey:
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return AccessKey(key_id, secret, principal, created)
