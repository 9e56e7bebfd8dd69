"""Whether a Python function's handler names a module its code holds (pure).

Lambda accepts any handler and fails each invocation with ``Runtime.ImportModuleError``; the
operator can tell at once, so the Function reports ``Ready=False`` with reason
``InvalidHandler`` and the message says what is missing. Only Python runtimes are checked:
``provided`` handlers are free text for the bootstrap, and an image's code is opaque.
"""

from __future__ import annotations

from collections.abc import Set

from klambda.api.types import FunctionSpec


def handler_problem(spec: FunctionSpec, files: Set[str] | None) -> str | None:
    """Why ``spec.handler`` cannot be loaded from ``files``; None when it can (or is unknown)."""
    if files is None or spec.runtime is None or not spec.runtime.startswith("python"):
        return None
    handler = spec.handler or ""
    module, dot, function = handler.rpartition(".")
    if not dot or not module or not function:
        return f"handler {handler!r} must be module.function (e.g. app.handler)"
    path = module.replace(".", "/")  # awslambdaric accepts dir/module.function and pkg.module
    candidates = (f"{path}.py", f"{path}/__init__.py")
    if not any(c in files for c in candidates):
        return (
            f"handler {handler!r}: the code has no module {module!r} "
            f"({' or '.join(candidates)} not found)"
        )
    return None
