"""A small raw-HTTP client for contract tests: exact status codes, bodies, headers, streams.

Contract tests talk HTTP directly (aiohttp) so that they check the wire, not a client
library's interpretation of it; ``test_python_client.py`` and ``test_kubectl.py`` add the real
clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "charts" / "klambda" / "crds"
EXAMPLES = REPO / "examples"
FN_PATH = "/apis/klambda.io/v1alpha1/namespaces/default/functions"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else ""


class Kube:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": content_type, **(headers or {})} if data is not None else headers
        async with self.session.request(
            method, self.url + path, data=data, params=params, headers=sent
        ) as r:
            text = await r.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(r.status, parsed, r.headers)

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any, **params: str) -> Reply:
        return await self.request("POST", path, body, params=params or None)

    async def put(self, path: str, body: Any, **params: str) -> Reply:
        return await self.request("PUT", path, body, params=params or None)

    async def patch(self, path: str, body: Any, kind: str = "merge", **params: str) -> Reply:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[kind]
        return await self.request(
            "PATCH", path, body, params=params or None, content_type=content_type
        )

    async def delete(self, path: str, body: Any = None, **params: str) -> Reply:
        return await self.request("DELETE", path, body, params=params or None)

    async def stream(self, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
        """Watch events, one per line, until the server closes the stream."""
        async with self.session.get(self.url + path, params={"watch": "true", **params}) as r:
            assert r.status == 200, await r.text()
            assert r.headers.get("Transfer-Encoding") == "chunked"
            async for line in r.content:
                if line.strip():
                    yield json.loads(line)

    async def events_until(self, path: str, last: str, **params: str) -> list[dict[str, Any]]:
        """Watch events before the first one about the object named ``last`` (a sentinel the
        test wrote after the events it expects), without waiting for a timeout."""
        events = []
        async for event in self.stream(path, timeoutSeconds="10", **params):
            if event["object"].get("metadata", {}).get("name") == last:
                return events
            events.append(event)
        raise AssertionError(f"the watch ended before {last!r} showed up: {events}")

    async def first_line(self, path: str, **params: str) -> tuple[int, str]:
        async with self.session.get(self.url + path, params=params) as r:
            return r.status, (await r.content.readline()).decode()

    async def watch_all(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every event of a watch that the server ends (give ``timeoutSeconds``)."""
        return [event async for event in self.stream(path, **params)]

    async def install_crds(self) -> None:
        """Create klambda's CRDs and wait until they are Established and served."""
        for path in sorted(CRD_DIR.glob("*.yaml")):
            reply = await self.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(path.read_text()),
            )
            assert reply.status == 201, reply.body

        def served(reply: Reply) -> bool:
            names = (
                {r["name"] for r in reply.body.get("resources", [])}
                if reply.status == 200
                else set()
            )
            return {"functions", "versions", "aliases"} <= names

        await self.wait_for(lambda: self.get("/apis/klambda.io/v1alpha1"), served)

    async def wait_for(self, call: Any, check: Any, timeout: float = 5.0) -> Reply:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            reply = await call()
            if check(reply):
                return reply
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; last reply {reply}")
            await asyncio.sleep(0.02)


def function(name: str, **spec: Any) -> dict[str, Any]:
    """A valid Function manifest (override spec fields with keyword arguments)."""
    base: dict[str, Any] = {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code": {"inline": {"app.py": "def handler(e, c):\n    return 1\n"}},
    }
    base.update(spec)
    return {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": base,
    }


def deployment(name: str, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers or [{"name": "main", "image": "busybox:1.36"}]},
            },
        },
    }


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }
