"""Kubernetes plumbing shared by the operator and the gateway: the API client (with its rate
limiter and retry verdicts), informers, leader election, the object cache, and the names and
labels the operator gives what it creates (which the gateway reads).

Depends only on ``klambda.api``; knows nothing of reconciling or routing.
"""
