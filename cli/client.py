"""HTTP calls from the CLI to a running local platform (admin API and gateway)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from klambda.api import sigv4
from klambda.cli.state import PlatformState

Rows = list[dict[str, Any]]
"""Objects or keys as the admin API lists them."""


class ApiError(Exception):
    """The platform refused a request; ``body`` is its (Kubernetes- or Lambda-shaped) answer."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 960.0,
) -> Response:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers.items()), e.read())
    except urllib.error.URLError as e:
        raise ApiError(0, f"cannot reach {url}: {e.reason}") from e


def signed(
    state: PlatformState, method: str, url: str, body: bytes, headers: dict[str, str]
) -> Response:
    """A request to the gateway signed with SigV4 by the platform's admin key."""
    parts = urllib.parse.urlsplit(url)
    auth = sigv4.sign(
        method,
        parts.path,
        parts.query,
        {**headers, "host": parts.netloc},
        body,
        access_key_id=state.access_key_id,
        secret=state.secret_access_key,
        region=state.region,
    )
    return request(method, url, body, {**headers, **auth})


class AdminClient:
    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        resp = request(
            method,
            self.state.admin_url + path,
            body,
            {
                "Authorization": f"Bearer {self.state.admin_token}",
                "Content-Type": "application/json",
            },
            timeout=60,
        )
        try:
            data = json.loads(resp.body) if resp.body else None
        except ValueError:
            data = None
        if resp.status >= 400:
            message = (
                data.get("message")
                if isinstance(data, dict)
                else resp.body.decode(errors="replace")
            )
            raise ApiError(resp.status, str(message), data)
        return data

    def apply(self, docs: list[Any]) -> list[dict[str, str]]:
        return list(self._call("POST", "/v1/apply", {"objects": docs})["results"])

    def list(self, kind: str, namespace: str | None = None) -> Rows:
        query = f"?namespace={namespace}" if namespace else ""
        return list(self._call("GET", f"/v1/objects/{kind}{query}")["items"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/objects/{kind}/{namespace}/{name}"))

    def list_keys(self) -> Rows:
        return list(self._call("GET", "/v1/keys")["items"])

    def create_key(self, name: str, namespace: str, policy: Any) -> dict[str, Any]:
        return dict(
            self._call("POST", "/v1/keys", {"name": name, "namespace": namespace, "policy": policy})
        )

    def delete_key(self, access_key_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/keys/{access_key_id}"))

    def publish(self, namespace: str, function: str, description: str) -> dict[str, Any]:
        body = {"namespace": namespace, "function": function, "description": description}
        return dict(self._call("POST", "/v1/publish", body))

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/objects/{kind}/{namespace}/{name}"))
