"""The handler check behind Ready=False, reason InvalidHandler."""

from __future__ import annotations

from typing import Any

import pytest

from klambda.api.objects import parse_object
from klambda.controller.handlers import handler_problem


def spec(runtime: str, handler: str | None) -> Any:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "fn"},
        "spec": {"runtime": runtime, "handler": handler, "code": {"inline": {"app.py": ""}}},
    }
    return parse_object(doc).spec


FILES = frozenset({"app.py", "pkg/__init__.py", "pkg/mod.py", "src/main.py", "bootstrap"})


@pytest.mark.parametrize(
    "handler", ["app.handler", "pkg.handler", "pkg.mod.handler", "src/main.handler"]
)
def test_handlers_whose_module_is_in_the_code(handler: str) -> None:
    assert handler_problem(spec("python3.12", handler), FILES) is None


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("main.handler", "the code has no module 'main' (main.py or main/__init__.py not found)"),
        ("pkg.other.handler", "no module 'pkg.other' (pkg/other.py or pkg/other/__init__.py"),
        ("handler", "must be module.function (e.g. app.handler)"),
        ("app.", "must be module.function"),
    ],
)
def test_handlers_that_cannot_load(handler: str, message: str) -> None:
    problem = handler_problem(spec("python3.12", handler), FILES)
    assert problem is not None and message in problem


def test_only_python_code_that_is_known_is_checked() -> None:
    assert handler_problem(spec("provided.al2023", "anything"), FILES) is None
    assert handler_problem(spec("python3.12", "main.handler"), None) is None  # an image
