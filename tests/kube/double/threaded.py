"""Run a :class:`KubeApiDouble` on its own event loop in a background thread.

For synchronous tests and clients (the ``kubernetes`` Python client, ``kubectl`` run with
``subprocess``): the double keeps serving while the test thread blocks.

    with ThreadedKubeApiDouble() as api:
        api.write_kubeconfig(path)
        api.call(lambda double: double.add_token("t", "alice"))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .double import ADMIN_TOKEN, KubeApiDouble
from .faults import Fault, RequestRecord

T = TypeVar("T")


class ThreadedKubeApiDouble:
    def __init__(self, **kwargs: Any) -> None:
        """``kwargs`` go to :class:`KubeApiDouble`."""
        self.double = KubeApiDouble(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kube-api-double", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.double.start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.double.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    def __enter__(self) -> ThreadedKubeApiDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        errors = self.double.server_errors
        if errors and exc[0] is None:
            raise AssertionError(f"the API double failed while serving: {errors!r}") from errors[0]

    def call(self, fn: Callable[[KubeApiDouble], T], timeout: float = 30) -> T:
        """Run ``fn(double)`` on the double's loop and return its result."""

        async def run() -> T:
            return fn(self.double)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=timeout)

    def settle(self, timeout: float = 5.0) -> None:
        asyncio.run_coroutine_threadsafe(self.double.settle(timeout), self._loop).result(
            timeout=timeout + 1
        )

    # the same conveniences as KubeApiDouble, made thread-safe ---------------------------------

    @property
    def url(self) -> str:
        return self.double.url

    def write_kubeconfig(
        self, path: str | Path, namespace: str = "default", token: str = ADMIN_TOKEN
    ) -> Path:
        return self.double.write_kubeconfig(path, namespace, token)

    def add_token(
        self, token: str, username: str, groups: list[str] | tuple[str, ...] = (), **kw: Any
    ) -> None:
        self.call(lambda d: d.add_token(token, username, groups, **kw))

    def fail(self, status: int, path: Any, **kw: Any) -> Fault:
        return self.call(lambda d: d.fail(status, path, **kw))

    @property
    def requests(self) -> list[RequestRecord]:
        return self.call(lambda d: list(d.requests))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.call(lambda d: d.create(obj))

    def get(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> dict[str, Any] | None:
        return self.call(lambda d: d.get(api_version, kind, name, namespace))

    def objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return self.call(lambda d: d.objects(api_version, kind, namespace))
