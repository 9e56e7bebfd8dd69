"""The ``klambda`` command line: ``klambda up`` runs the local platform; the rest talk to it."""
