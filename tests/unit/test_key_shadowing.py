"""Attack: a tenant puts another tenant's access key id in a Secret of its own, to take the key
over (or lock its owner out). The oldest Secret holding a key id keeps it."""

from __future__ import annotations

import base64
from typing import Any

from klambda.gateway.kube_iam import PRINCIPAL_LABEL, SecretDirectory


def secret(namespace: str, name: str, created: str, key_id: str, key: str) -> dict[str, Any]:
    def b64(v: str) -> str:
        return base64.b64encode(v.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": "1",
            "creationTimestamp": created,
            "labels": {PRINCIPAL_LABEL: name},
        },
        "data": {"accessKeyId": b64(key_id), "secretAccessKey": b64(key)},
    }


def directory(*secrets: dict[str, Any]) -> SecretDirectory:
    d = SecretDirectory(client=None)  # type: ignore[arg-type]  # the cache is filled by hand
    for s in secrets:
        d.keys.assume(s)
    return d


def test_a_later_copy_of_a_key_id_cannot_shadow_the_owner() -> None:
    owner = secret("team-b", "ci", "2026-11-01T00:00:00Z", "AKIAVICTIM0000000001", "victim")
    copy = secret("aaa", "thief", "2026-12-01T00:00:00Z", "AKIAVICTIM0000000001", "thief")
    for order in ((owner, copy), (copy, owner)):  # whatever order the watch delivers them in
        found = directory(*order).lookup("AKIAVICTIM0000000001")
        assert found is not None
        key, principal = found
        assert (principal.namespace, principal.name, key.secret_access_key) == (
            "team-b",
            "ci",
            "victim",
        )


def test_each_key_id_finds_its_own_secret_among_many() -> None:
    many = [secret("ns", f"p{i}", "2026-01-01T00:00:00Z", f"AKIA{i:016d}", "s") for i in range(500)]
    d = directory(*many)
    found = d.lookup("AKIA0000000000000123")
    assert found is not None and found[1].name == "p123"
    assert d.lookup("AKIAUNKNOWN") is None
