"""Secret values in a function's environment (spec.environment.secretRefs) under ``klambda up``."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Platform, wait_for_reason
from tests.e2e.test_code_sources import invoke_until

SECRET = """apiVersion: v1
kind: Secret
metadata: {name: db-credentials}
stringData: {password: %s}
"""

FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: %s}
spec:
  runtime: python3.11
  handler: app.handler
  environment:
    variables: {DB_USER: app}
    secretRefs:
      DB_PASSWORD: {name: %s, key: password}
  code:
    inline:
      app.py: |
        import os
        def handler(event, context):
            return [os.environ["DB_USER"], os.environ["DB_PASSWORD"]]
"""


def test_secret_values_reach_the_environment_and_roll_on_change(
    platform: Platform, tmp_path: Path
) -> None:
    (tmp_path / "s.yaml").write_text(SECRET % "hunter2")
    (tmp_path / "fn.yaml").write_text(FUNCTION % ("with-secret", "db-credentials"))
    for name in ("s.yaml", "fn.yaml"):
        r = platform.cli("apply", "-f", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
    invoke_until(platform, "with-secret", ["app", "hunter2"])
    # the value is in neither the stored manifest nor the Lambda API's configuration
    manifest = platform.cli("get", "fn", "with-secret", "-o", "json").stdout
    assert "hunter2" not in manifest
    status, _, body = platform.http("GET", "/2015-03-31/functions/with-secret")
    assert status == 200 and b"DB_USER" in body and b"hunter2" not in body

    (tmp_path / "s.yaml").write_text(SECRET % "correct-horse")
    assert platform.cli("apply", "-f", str(tmp_path / "s.yaml")).returncode == 0
    invoke_until(platform, "with-secret", ["app", "correct-horse"])


def test_missing_secret_shows_in_status(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "fn.yaml").write_text(FUNCTION % ("no-secret", "absent"))
    assert platform.cli("apply", "-f", str(tmp_path / "fn.yaml")).returncode == 0
    ready = wait_for_reason(platform, "no-secret", "SecretNotFound")["conditions"][0]
    assert ready["status"] == "False"
    assert 'Secret "absent" not found in namespace default (DB_PASSWORD)' in ready["message"]


def test_secrets_are_listed_like_kubectl_lists_them(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SECRET.replace("db-credentials", "listed") % "x")
    r = platform.cli("apply", "-f", str(tmp_path / "s.yaml"))
    assert r.stdout.split() == ["secret/listed", "created"], r.stderr
    table = platform.cli("get", "secrets", "listed").stdout.split()
    assert table == ["NAME", "DATA", "listed", "1"]
    assert platform.cli("delete", "secret", "listed").returncode == 0
