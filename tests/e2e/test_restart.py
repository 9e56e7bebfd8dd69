"""``klambda up`` keeps what was applied: objects survive a restart and a kill -9."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

from tests.e2e.conftest import Platform, start_platform, stop_platform
from tests.e2e.test_code_sources import invoke_until
from tests.e2e.test_secrets import FUNCTION as SECRET_FUNCTION
from tests.e2e.test_secrets import SECRET
from tests.e2e.test_versions import FUNCTION, alias, apply, code_of, invoke, publish, wait_for

MAPPING = """apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: feed}
spec:
  functionName: kept
  source: {queue: kept-queue}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: kept-queue}
spec: {}
"""


def _start(tmp: Path) -> Platform:
    empty = tmp / "no-manifests"
    empty.mkdir(exist_ok=True)
    return start_platform(tmp, str(empty))


def _names(p: Platform, kind: str) -> set[str]:
    r = p.cli("get", kind, "-o", "json")
    assert r.returncode == 0, r.stderr
    return {o["metadata"]["name"] for o in json.loads(r.stdout)}


def test_everything_applied_is_back_and_serving_after_a_restart(tmp_path: Path) -> None:
    p = _start(tmp_path)
    try:
        apply(p, tmp_path, FUNCTION.format(name="kept", label="one", extra=""), "kept.yaml")
        wait_for(lambda: code_of(p, "kept") == "one")
        assert publish(p, "kept") == "1"
        apply(p, tmp_path, FUNCTION.format(name="kept", label="two", extra=""), "kept.yaml")
        wait_for(lambda: code_of(p, "kept") == "two")
        assert publish(p, "kept") == "2"
        apply(p, tmp_path, alias("live", "kept", "1"), "alias.yaml")
        apply(p, tmp_path, SECRET % "hunter2", "secret.yaml")
        apply(p, tmp_path, SECRET_FUNCTION % ("with-secret", "db-credentials"), "fn.yaml")
        apply(p, tmp_path, MAPPING, "esm.yaml")
        invoke_until(p, "with-secret", ["app", "hunter2"])
        before = {k: _names(p, k) for k in ("functions", "versions", "aliases", "esm", "secrets")}
        uid = json.loads(p.cli("get", "fn", "kept", "-o", "json").stdout)["metadata"]["uid"]
    finally:
        stop_platform(p)

    db = p.data_dir / "state" / "objects.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # Secrets are in it
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700

    again = _start(tmp_path)
    try:
        after = {k: _names(again, k) for k in before}
        assert after == before
        kept = json.loads(again.cli("get", "fn", "kept", "-o", "json").stdout)
        assert kept["metadata"]["uid"] == uid  # the same object, not a re-creation
        assert wait_for(lambda: code_of(again, "kept") == "two")
        status, headers, body = invoke(again, "kept", "live")
        assert status == 200 and body["code"] == "one" and headers["X-Amz-Executed-Version"] == "1"
        invoke_until(again, "with-secret", ["app", "hunter2"])
        # version numbers are never reused: the next publish after a change gets 3
        apply(again, tmp_path, FUNCTION.format(name="kept", label="three", extra=""), "kept.yaml")
        wait_for(lambda: code_of(again, "kept") == "three")
        assert publish(again, "kept") == "3"
    finally:
        stop_platform(again)


def test_kill_9_during_applies_loses_nothing_acknowledged(tmp_path: Path) -> None:
    p = _start(tmp_path)
    acknowledged: list[str] = []

    def apply_many() -> None:
        for i in range(200):
            name = f"fn-{i}"
            path = tmp_path / f"{name}.yaml"
            path.write_text(FUNCTION.format(name=name, label=str(i), extra=""))
            r = p.cli("apply", "-f", str(path))
            if r.returncode != 0:
                return  # the platform is gone
            acknowledged.append(name)

    writer = threading.Thread(target=apply_many)
    writer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.process.pid, 9)
    p.process.wait()
    writer.join(60)
    stop_platform(p)
    assert len(acknowledged) >= 5

    again = _start(tmp_path)
    try:
        kept = _names(again, "functions")
        assert set(acknowledged) <= kept, set(acknowledged) - kept
    finally:
        stop_platform(again)


def test_durability_strict_syncs_every_write(tmp_path: Path) -> None:
    import redis

    empty = tmp_path / "no-manifests"
    empty.mkdir()
    for flag, expected in ((("--durability", "strict"), "always"), ((), "everysec")):
        p = start_platform(tmp_path / expected, str(empty), extra=flag)
        try:
            client = redis.Redis.from_url(p.state()["redis_url"])
            assert client.config_get("appendfsync")["appendfsync"] == expected
            client.close()
        finally:
            stop_platform(p)
