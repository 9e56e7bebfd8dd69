"""A minimal HTTP/1.1 server protocol for the Runtime API: requests parsed by llhttp
(httptools), each answered with one pre-built response written in one call.

Runtimes speak plain HTTP/1.1 with keep-alive, one request at a time (a ``/next`` waits for
its invocation). The handler returns the response bytes, or a future of them; requests that
arrive while one is pending are answered in order after it. A request whose Content-Length
is over the limit is answered from its headers (a client waiting on ``Expect: 100-continue``
sends no body) and its connection closed; a chunked body that grows over it is read and
dropped (the connection stays in step). Either is marked ``too_large``. With a ``uid``, a
connection whose client end another user owns is answered 403 on every request
(``identity.peer_uid``, checked once per connection).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools

from klambda.shim.identity import peer_uid

log = logging.getLogger(__name__)

Answer = bytes | asyncio.Future[bytes]


@dataclass(slots=True)
class Request:
    method: str = ""
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """Names lower-cased."""
    body: bytes = b""
    too_large: bool = False


def response(
    status: int, body: bytes, headers: dict[str, str] | None = None, keep_alive: bool = True
) -> bytes:
    """A whole HTTP/1.1 response (JSON unless ``headers`` name a Content-Type)."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    given = headers or {}
    if not any(k.lower() == "content-type" for k in given):
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in given.items()]
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_FORBIDDEN = response(
    403,
    json.dumps(
        {
            "errorType": "Runtime.Forbidden",
            "errorMessage": "this Runtime API answers only its function's runtime",
        }
    ).encode(),
)
_BAD_REQUEST = response(
    400,
    b'{"errorType": "Runtime.BadRequest", "errorMessage": "not an HTTP/1.1 request"}',
    keep_alive=False,
)


class RuntimeConnection(asyncio.Protocol):
    """One runtime's connection to its environment's Runtime API port."""

    def __init__(self, handle: Callable[[Request], Answer], uid: int | None, limit: int) -> None:
        self.handle = handle
        self.uid = uid
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self.forbidden = False
        self.parser = httptools.HttpRequestParser(self)
        self._request = Request()
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self._waiting: asyncio.Future[bytes] | None = None
        self._keep_alive = True
        self._early = False
        """The request being read was answered from its headers (too large)."""

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.uid is not None:
            sockname = transport.get_extra_info("sockname")
            peername = transport.get_extra_info("peername")
            self.forbidden = not (
                sockname and peername and peer_uid(sockname, peername) == self.uid
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._queue.clear()
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()  # a /next nobody waits for any more

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._write(_BAD_REQUEST, False)
        except httptools.HttpParserError as e:
            log.info("closing a Runtime API connection: %s", e)
            self._write(_BAD_REQUEST, False)

    # ------------------------------------------------------------------ llhttp callbacks

    def on_message_begin(self) -> None:
        self._request = Request()
        self._early = False
        self._url = b""
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._request.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        headers = self._request.headers
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            # answered now (a client waiting on "Expect: 100-continue" sends no body), and the
            # connection closed after it: the client may or may not send the body
            self._request.too_large = True
            self._early = True
            self._take(self._request, keep_alive=False)
        elif headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # no 1 s client wait

    def on_body(self, body: bytes) -> None:
        if self._request.too_large:
            return  # read and dropped: the connection stays in step
        self._size += len(body)
        if self._size > self.limit:
            self._request.too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        if self._early:
            return  # answered when its headers came
        request.body = b"".join(self._body)
        self._take(request, self.parser.should_keep_alive())

    def _take(self, request: Request, keep_alive: bool) -> None:
        """Queues a request (its method and path from the parser) and answers what it can."""
        request.method = self.parser.get_method().decode("latin-1")
        request.path = httptools.parse_url(self._url).path.decode("latin-1")
        self._queue.append((request, keep_alive))
        if self._waiting is None:
            self._next()

    # ------------------------------------------------------------------ answering

    def _next(self) -> None:
        """Answers queued requests in order until one must wait."""
        while self._queue and self._waiting is None and self.transport is not None:
            request, keep_alive = self._queue.popleft()
            answer = _FORBIDDEN if self.forbidden else self.handle(request)
            if isinstance(answer, bytes):
                self._write(answer, keep_alive)
                continue
            self._waiting = answer
            self._keep_alive = keep_alive
            answer.add_done_callback(self._answered)

    def _answered(self, done: asyncio.Future[bytes]) -> None:
        self._waiting = None
        keep_alive = self._keep_alive
        if done.cancelled():
            return
        self._write(done.result(), keep_alive)
        self._next()

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()
