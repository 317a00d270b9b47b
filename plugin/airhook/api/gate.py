"""What the management API checks before it reads a request's body: credentials, and size.

Why before: FastAPI reads and parses a route's JSON body before it solves the route's
dependencies, login included, so without this an anonymous client could make the API server
read (and parse) a body of any size, and malformed JSON got 422 before the 401. Here, as an ASGI
middleware in front of the app:

- a request that carries no credentials at all (no ``Authorization: Bearer`` token, no Airflow
  UI cookie) and would send a body is answered 401 at once, as Airflow answers anonymous
  requests, without reading the body. Whether credentials are *valid* is still the routes'
  business (:mod:`airhook.api.auth`): this only turns away those who brought none.
- a body larger than :data:`MAX_BODY_BYTES` is answered 413: a declared ``Content-Length`` over
  it before anything is read, a chunked body as soon as it passes it.

The largest legitimate body is a subscription with an inline template (64 KiB at most), so the
limit leaves room and stops nothing real.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

__all__ = ["MAX_BODY_BYTES", "RequestGate"]

#: The largest request body the management API reads.
MAX_BODY_BYTES = 1024 * 1024
#: Airflow's UI session cookie (``COOKIE_NAME_JWT_TOKEN``): a JWT, like the bearer token.
_COOKIE = "_token"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _has_credentials(headers: Headers) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return True
    cookies = cookie_parser(headers.get("cookie", ""))
    return bool(cookies.get(_COOKIE))


async def _answer(send: Send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


class RequestGate:
    """ASGI middleware: 401 for a body without credentials, 413 for a body over the limit."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, then hand the request on."""
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _has_credentials(headers):
            # Airflow's own answer to an anonymous request (HTTPBearer's, then get_user's).
            await _answer(send, 401, "Not authenticated", (b"www-authenticate", b"Bearer"))
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await _answer(send, 413, f"request body larger than {self._limit} bytes")
            return
        # Read the body here, up to the limit, and hand it on whole: the app's own reading
        # cannot be stopped half-way without its error handling answering 500.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                await _answer(send, 413, f"request body larger than {self._limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self._app(scope, replay, send)
