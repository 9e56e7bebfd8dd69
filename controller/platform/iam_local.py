"""The local platform's principals and access keys, in ``<data-dir>/iam.json`` (mode 0600).

Kept on disk so keys survive restarts of ``klambda up``. Reads are served from memory.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from klambda.api.iam import ADMIN_POLICY, AccessKey, Principal, new_key_pair
from klambda.api.policy import PolicyError, parse_policy


class IamError(ValueError):
    """A request about principals or keys cannot be carried out; the message says why."""


class FileDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._principals: dict[str, Principal] = {}
        self._keys: dict[str, AccessKey] = {}
        if path.exists():
            self._load(json.loads(path.read_text()))

    def _load(self, data: dict[str, Any]) -> None:
        for ref, p in data.get("principals", {}).items():
            self._principals[ref] = Principal(p["name"], p["namespace"], tuple(p["policies"]))
        for key_id, k in data.get("keys", {}).items():
            self._keys[key_id] = AccessKey(key_id, k["secret"], k["principal"], k["created"])

    def _save(self) -> None:
        data = {
            "principals": {
                ref: {**asdict(p), "policies": list(p.policies)}
                for ref, p in self._principals.items()
            },
            "keys": {
                k.access_key_id: {
                    "secret": k.secret_access_key,
                    "principal": k.principal,
                    "created": k.created,
                }
                for k in self._keys.values()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        tmp.replace(self.path)

    # ------------------------------------------------------------------ reads

    def lookup(self, access_key_id: str) -> tuple[AccessKey, Principal] | None:
        key = self._keys.get(access_key_id)
        if key is None:
            return None
        principal = self._principals.get(key.principal)
        return (key, principal) if principal is not None else None

    def access_keys(self) -> list[tuple[AccessKey, Principal]]:
        return [
            (k, self._principals[k.principal])
            for k in self._keys.values()
            if k.principal in self._principals
        ]

    # ------------------------------------------------------------------ writes

    def ensure_admin(self, namespace: str = "default") -> AccessKey:
        """The local admin's key pair (allowed everything), created on first start."""
        ref = f"{namespace}/admin"
        if ref not in self._principals:
            self._principals[ref] = Principal("admin", namespace, (ADMIN_POLICY,))
        existing = [k for k in self._keys.values() if k.principal == ref]
        if existing:
            self._save()
            return existing[0]
        return self.create_key("admin", namespace)

    def create_key(
        self, name: str, namespace: str, policy: dict[str, Any] | None = None
    ) -> AccessKey:
        if policy is not None:
            try:
                parse_policy(policy, resource_policy=False)
            except PolicyError as e:
                raise IamError(f"invalid policy: {e}") from e
        ref = f"{namespace}/{name}"
        current = self._principals.get(ref)
        policies = (policy,) if policy is not None else current.policies if current else ()
        self._principals[ref] = Principal(name, namespace, policies)
        key = new_key_pair(ref, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._keys[key.access_key_id] = key
        self._save()
        return key

    def delete_key(self, access_key_id: str) -> AccessKey:
        key = self._keys.pop(access_key_id, None)
        if key is None:
            raise IamError(f"no access key {access_key_id}")
        self._save()
        return key
