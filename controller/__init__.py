"""The control plane: the API model, reconcile logic, platforms, and the ``klambda`` CLI."""
