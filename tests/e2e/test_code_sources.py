"""Code from a zip archive and from a ConfigMap, applied to a running ``klambda up``."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

from tests.e2e.conftest import Platform, wait_for_reason

ZIP_FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: zipped}
spec:
  runtime: python3.11
  handler: pkg/main.handler
  code: {zip: code.zip}
"""

CM_FUNCTION = """apiVersion: v1
kind: ConfigMap
metadata: {name: mapped-src}
data:
  app.py: |
    def handler(event, context):
        return {"from": "configmap", "version": VERSION}
    VERSION = %d
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: mapped}
spec:
  runtime: python3.11
  handler: app.handler
  code: {configMap: mapped-src}
"""


def invoke_until(platform: Platform, name: str, check: object, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        r = platform.cli("invoke", name)
        if r.returncode == 0 and (body := json.loads(r.stdout)) and body == check:
            return body
        assert time.monotonic() < deadline, (r.stdout, r.stderr)
        time.sleep(0.2)


def test_zip_code_relative_to_the_manifest(platform: Platform, tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "code.zip", "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/main.py", "def handler(event, context):\n    return {'zipped': True}\n")
    (tmp_path / "fn.yaml").write_text(ZIP_FUNCTION)
    r = platform.cli("apply", "-f", str(tmp_path / "fn.yaml"))
    assert r.returncode == 0, r.stderr
    invoke_until(platform, "zipped", {"zipped": True})


def test_config_map_code_rolls_when_the_config_map_changes(
    platform: Platform, tmp_path: Path
) -> None:
    manifest = tmp_path / "mapped.yaml"
    manifest.write_text(CM_FUNCTION % 1)
    r = platform.cli("apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["configmap/mapped-src", "created", "function/mapped", "created"]
    invoke_until(platform, "mapped", {"from": "configmap", "version": 1})
    manifest.write_text(CM_FUNCTION % 2)
    r = platform.cli("apply", "-f", str(manifest))
    assert r.stdout.split() == [
        "configmap/mapped-src",
        "configured",
        "function/mapped",
        "unchanged",
    ]
    invoke_until(platform, "mapped", {"from": "configmap", "version": 2})


def test_missing_code_shows_in_status_and_invoke(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "fn.yaml").write_text(
        ZIP_FUNCTION.replace("zipped", "nozip").replace("code.zip", "absent.zip")
    )
    assert platform.cli("apply", "-f", str(tmp_path / "fn.yaml")).returncode == 0
    status = wait_for_reason(platform, "nozip", "CodeFetchFailed")
    ready = status["conditions"][0]
    assert ready["status"] == "False" and "absent.zip" in ready["message"]
    assert status["state"] == "Failed"
    r = platform.cli("invoke", "nozip")
    assert r.returncode == 1 and "ResourceNotReadyException" in r.stderr
    assert "absent.zip" in r.stderr


def test_image_functions_are_refused_locally_with_a_reason(
    platform: Platform, tmp_path: Path
) -> None:
    (tmp_path / "img.yaml").write_text(
        "apiVersion: klambda.io/v1alpha1\nkind: Function\nmetadata: {name: imaged}\n"
        "spec: {code: {image: registry.example.com/app:1}}\n"
    )
    assert platform.cli("apply", "-f", str(tmp_path / "img.yaml")).returncode == 0
    ready = wait_for_reason(platform, "imaged", "ImageNotSupported")["conditions"][0]
    assert ready["status"] == "False" and "Kubernetes only" in ready["message"]
    r = platform.cli("invoke", "imaged")
    assert r.returncode == 1 and "Kubernetes only" in r.stderr


def test_a_handler_the_code_lacks_shows_in_status(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "fn.yaml").write_text(
        "apiVersion: klambda.io/v1alpha1\nkind: Function\nmetadata: {name: misnamed}\n"
        "spec:\n  runtime: python3.11\n  handler: main.handler\n"
        "  code: {inline: {app.py: 'def handler(e, c): return 1'}}\n"
    )
    assert platform.cli("apply", "-f", str(tmp_path / "fn.yaml")).returncode == 0
    ready = wait_for_reason(platform, "misnamed", "InvalidHandler")["conditions"][0]
    assert ready["status"] == "False"
    assert "no module 'main' (main.py or main/__init__.py not found)" in ready["message"]
