"""TokenRequest and TokenReview requests (the token book itself is ``auth.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .errors import FieldError, invalid_object
from .meta import rfc3339
from .params import Query
from .reads import current
from .routing import Target
from .settings import Cluster
from .writes import Outcome, decode_object


def create_token(cluster: Cluster, target: Target, body: Any, query: Query) -> Outcome:
    """TokenRequest: ``POST serviceaccounts/{name}/token`` mints a token TokenReview accepts."""
    account = current(cluster, target)
    spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
    seconds = int(spec.get("expirationSeconds") or 3600)
    uid = account["metadata"]["uid"]
    token = cluster.tokens.mint_service_account(
        target.namespace, target.name, uid, list(spec.get("audiences") or [])
    )
    expires = rfc3339(cluster.clock() + timedelta(seconds=seconds))
    response = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": target.name, "namespace": target.namespace, "creationTimestamp": None},
        "spec": {
            "audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"],
            "expirationSeconds": seconds,
            "boundObjectRef": spec.get("boundObjectRef"),
        },
        "status": {"token": token, "expirationTimestamp": expires},
    }
    return 201, response, []


def token_review(cluster: Cluster, target: Target, body: Any, query: Query) -> Outcome:
    review = decode_object(body, target.rtype)
    spec = review.get("spec") or {}
    if not spec.get("token"):
        raise invalid_object(
            target.rtype,
            "",
            [FieldError("Required", "spec.token", detail="token must not be empty")],
        )
    review["status"] = cluster.tokens.review(spec)
    review["metadata"] = {"creationTimestamp": None}
    return 201, review, []
