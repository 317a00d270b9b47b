"""The receiver: a FastAPI app the Airflow API server mounts at ``/airhook``.

``POST`` or ``PUT`` ``/airhook/webhooks/<source>``:

====  =======================================================================================
202   recorded; ``{"id": …}``
200   a duplicate of an earlier delivery, the very same signed request included
      (``{"id": <first id>, "duplicate": true}``), or an authentic event the source does not
      take (``{"status": "ignored"}``)
400   not JSON, not an object, or nested too deep
401   signature, token or credentials wrong or missing; timestamp outside the tolerance
403   client address outside the source's allow-list; source inactive
404   no such source
413   body larger than the limit
422   unknown event, or the event does not match its schema (``path`` says where)
503   the store could not record the delivery (the sender should retry)
====  =======================================================================================

Plugin apps are mounted without Airflow's authentication: every delivery authenticates itself
through its source. ``GET /airhook/receiver/stats`` needs an Airflow login.

The same app also runs on its own under uvicorn (``python -m airhook.receiver``, see
:func:`create_standalone_app`): same store, same sources, same recording, at the same URLs.

Why the webhook route is a plain ASGI endpoint on a Starlette ``Route`` and not a FastAPI route:
it is the only hot path, and FastAPI's per-request work there (solving the dependencies of
``source_name`` and ``Request``, building a ``JSONResponse``) cost several times airhook's own
checks (``docs/performance.md``). The endpoint reads the path parameter and the body straight
from the ASGI scope and channel and sends pre-serialised orjson bodies; the answers are the same
bytes and statuses as before.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Route

from airhook import config, metrics
from airhook.core.catalog import Catalog, load_catalog
from airhook.core.errors import (
    AirhookError,
    PayloadParseError,
    PayloadValidationError,
    UnknownEventError,
    VerificationError,
)
from airhook.core.ids import new_event_id
from airhook.core.received_headers import kept_headers
from airhook.receiver.backpressure import Backpressure
from airhook.receiver.metrics import ReceiverMetrics
from airhook.receiver.pipeline import Ignored, check_delivery
from airhook.receiver.source_cache import SourceCache
from airhook.receiver.writer import GroupCommitWriter
from airhook.store.inbox import InboxRepository, NewEvent

__all__ = [
    "STANDALONE_PREFIX",
    "ReceiverApp",
    "ReceiverRuntime",
    "WebhookEndpoint",
    "create_app",
    "create_standalone_app",
]

log = logging.getLogger(__name__)

#: The metrics label of deliveries to no known source (no source name starts with ``_``).
UNKNOWN_SOURCE = "_unknown"
#: Where the standalone receiver serves: the plugin's mount point (``airhook.plugin.URL_PREFIX``),
#: so that a delivery URL is the same whichever process answers it.
STANDALONE_PREFIX = "/airhook"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class ReceiverRuntime:
    """Everything one receiving process needs: built by the app's lifespan."""

    catalog: Catalog
    sources: SourceCache
    writer: GroupCommitWriter
    default_max_body: int
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    dispatcher: Any = None
    sender: Any = None
    pruner: Any = None
    backpressure: Backpressure | None = None
    retry_after_seconds: int = 30

    def __post_init__(self) -> None:
        seconds = str(self.retry_after_seconds)
        self.backpressure_answer = _answer(
            503,
            {"error": "backpressure", "retry_after": self.retry_after_seconds},
            retry_after=seconds,
        )

    @classmethod
    def start(cls) -> ReceiverRuntime:
        """Migrate the store, load sources, start the writer and (if enabled) the dispatcher,
        the background sender and the background pruner."""
        from airhook.crypto import airflow_cipher
        from airhook.delivery.sender import start_configured_sender
        from airhook.dispatcher import Dispatcher
        from airhook.pruner import start_configured_pruner
        from airhook.store import get_store
        from airhook.store.migrate import upgrade
        from airhook.store.sources import SourceRepository

        metrics.start()  # see airhook.metrics: not every process has them set up
        store = get_store()
        upgrade(store)
        catalog = load_catalog()
        sources = SourceCache(
            SourceRepository(store, airflow_cipher()),
            catalog,
            tolerance=config.get_int("timestamp_tolerance_seconds"),
            refresh_seconds=config.get_float("source_cache_seconds"),
        )
        sources.start()
        dispatcher = None
        if config.get_bool("dispatcher_enabled"):
            dispatcher = Dispatcher(
                store,
                batch_size=config.get_int("dispatch_batch_size"),
                poll_seconds=config.get_float("dispatch_poll_seconds"),
                payload_max_bytes=config.get_int("payload_in_extra_max_bytes"),
            )
            dispatcher.start()
        inbox = InboxRepository(store)
        writer = GroupCommitWriter(
            inbox, on_commit=dispatcher.wake if dispatcher else (lambda: None)
        )
        writer.start()
        backpressure = Backpressure(
            inbox.backlog,
            writer.queued,
            backlog_bound=config.get_int("backpressure_backlog"),
            queue_bound=config.get_int("backpressure_writer_queue"),
            check_seconds=config.get_float("backpressure_check_seconds"),
        )
        backpressure.start()
        return cls(
            catalog=catalog,
            sources=sources,
            writer=writer,
            default_max_body=config.get_int("max_body_bytes"),
            dispatcher=dispatcher,
            sender=start_configured_sender(store, catalog),
            backpressure=backpressure,
            retry_after_seconds=config.get_int("backpressure_retry_after_seconds"),
            pruner=start_configured_pruner(store),
        )

    def stop(self) -> None:
        """Finish queued writes, stop the threads."""
        if self.pruner is not None:
            self.pruner.stop()  # between two batches: the one in hand finishes first
        if self.sender is not None:
            self.sender.stop()
        if self.backpressure is not None:
            self.backpressure.stop()
        self.writer.stop()
        self.sources.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()


# --- answers, serialised once -------------------------------------------------------------------

_JSON = (b"content-type", b"application/json")


class _Answer:
    """A complete JSON answer: status, body bytes and headers, ready for the ASGI ``send``."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self.status = status
        self.body = body
        # What Starlette's JSONResponse sent: content-length and content-type (plus extras).
        self.headers = [(b"content-length", str(len(body)).encode()), _JSON, *extra_headers]

    async def send(self, send: Send) -> None:
        """Send the answer; the header list is copied, since a middleware may add to it."""
        start = {"type": "http.response.start", "status": self.status, "headers": [*self.headers]}
        await send(start)
        await send({"type": "http.response.body", "body": self.body})


def _answer(status: int, content: dict[str, Any], **headers: str) -> _Answer:
    extra = tuple((k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items())
    return _Answer(status, orjson.dumps(content), extra)


_UNAVAILABLE = _answer(503, {"error": "receiver_unavailable"})
_STORE_UNAVAILABLE = _answer(503, {"error": "store_unavailable"}, retry_after="5")
_SOURCE_UNAVAILABLE = _answer(503, {"error": "source_unavailable"}, retry_after="60")
_ERRORS: dict[tuple[int, str], _Answer] = {}


def _error(status: int, error: str, **details: Any) -> _Answer:
    """The answer ``{"error": error, **details}``; those without details are built once."""
    if details:
        return _answer(status, {"error": error, **details})
    answer = _ERRORS.get((status, error))
    if answer is None:  # a small fixed set: reason codes are constants, never caller input
        answer = _ERRORS[(status, error)] = _answer(status, {"error": error})
    return answer


class _TooLarge(AirhookError):
    """The body exceeded the limit while it was being read."""


class _Disconnected(AirhookError):
    """The client went away before its body was read."""


async def _read_body(headers: Headers, receive: Receive, limit: int) -> bytes:
    """Return the body; raise :class:`_TooLarge` as soon as it exceeds ``limit`` bytes.

    Nothing more is read once the limit is passed (a declared Content-Length over it is refused
    before any of the body is read).
    """
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            if not chunks:
                return chunk  # the usual case: the whole body in one message
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


class WebhookEndpoint:
    """``POST|PUT …/webhooks/{source_name}`` as a bare ASGI app (see the module docstring)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one delivery."""
        current: ReceiverRuntime | None = self._app.state.runtime
        if current is None:
            await _UNAVAILABLE.send(send)
            return
        try:
            answer = await self._receive(current, scope, receive)
        except _Disconnected:
            return  # nobody to answer; nothing was recorded
        await answer.send(send)

    async def _receive(self, current: ReceiverRuntime, scope: Scope, receive: Receive) -> _Answer:
        source_name: str = scope["path_params"]["source_name"]
        prepared = current.sources.get(source_name)
        if prepared is None:
            if current.sources.unreadable(source_name):
                # Configured, but its secrets cannot be read here: the sender should retry.
                current.metrics.count(source_name, "source_unavailable", rejected=True)
                log.error("airhook cannot verify deliveries to %s: answering 503", source_name)
                return _SOURCE_UNAVAILABLE
            # Counted under one label: a name the caller chose must not become a metric key.
            return _reject(current, UNKNOWN_SOURCE, 404, "unknown_source")
        source = prepared.source
        if not source.active:
            return _reject(current, source.name, 403, "source_inactive")
        if current.backpressure is not None and current.backpressure.refuse():
            # Before the body is read and checked: shedding load is the point. Nothing is
            # recorded, so nothing acknowledged can be lost; the sender comes back later.
            current.metrics.count(source.name, "backpressure", rejected=True)
            return current.backpressure_answer
        headers = Headers(scope=scope)
        try:
            body = await _read_body(
                headers, receive, source.max_body_bytes or current.default_max_body
            )
        except _TooLarge:
            return _reject(current, source.name, 413, "too_large")
        client = scope.get("client")
        try:
            result = check_delivery(
                prepared,
                current.catalog,
                headers,
                body,
                client[0] if client else None,
                now=time.time(),
            )
        except VerificationError as exc:
            return _reject(current, source.name, exc.status_code, exc.reason)
        except PayloadParseError as exc:
            return _reject(current, source.name, 400, exc.reason)
        except UnknownEventError:
            return _reject(current, source.name, 422, "unknown_event")
        except PayloadValidationError as exc:
            return _reject(
                current,
                source.name,
                422,
                "schema_violation",
                path=exc.json_path,
                keyword=exc.keyword,
                message=exc.message,
            )
        if isinstance(result, Ignored):
            current.metrics.count(source.name, result.reason)
            return _answer(200, {"status": "ignored", "reason": result.reason})
        event = NewEvent(
            id=new_event_id(),
            source=source.name,
            profile=source.profile,
            event=result.event,
            kind=result.kind,
            dedupe_key=result.dedupe_key,
            body=result.body,
            received_at=datetime.now(timezone.utc),
            headers=orjson.dumps(kept_headers(headers.items(), prepared.signing_headers)).decode(),
        )
        try:
            recorded = await current.writer.record(event)
        except Exception:
            current.metrics.count(source.name, "store_unavailable", rejected=True)
            return _STORE_UNAVAILABLE
        if recorded.status == "duplicate":
            current.metrics.count(source.name, "duplicate")
            return _answer(200, {"id": recorded.id, "duplicate": True})
        current.metrics.count(source.name, "accepted")
        return _Answer(202, b'{"id":' + orjson.dumps(recorded.id) + b"}")


class ReceiverApp(FastAPI):
    """The receiver's FastAPI app, with a shortcut past FastAPI's stack for deliveries.

    A ``POST``/``PUT`` to ``…/webhooks/<source>`` goes straight to :class:`WebhookEndpoint`,
    skipping the app's error and exception middleware and the router: they only pass the
    request along (the endpoint answers every case itself), at about a fifth of the app's
    main-thread CPU per delivery (``docs/performance.md``). Anything else (another method: 405;
    the stats or health route; a path that does not match) takes the normal path through
    FastAPI, where the same endpoint is registered as a plain Starlette ``Route`` too, so
    routing, ``url_path_for`` and 405s behave as before.
    """

    webhooks_path: str = "/webhooks/"
    webhook: WebhookEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a delivery directly; hand everything else to FastAPI."""
        if self.webhook is not None and scope["type"] == "http" and scope["method"] in _METHODS:
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            # What Starlette's router matches on when the app is mounted (Airflow's /airhook):
            # the path without the mount's root_path.
            if root_path and path.startswith(root_path + "/"):
                path = path[len(root_path) :]
            if path.startswith(self.webhooks_path):
                name = path[len(self.webhooks_path) :]
                if name and "/" not in name:  # what the route's {source_name} matches
                    scope["app"] = self
                    scope["path_params"] = {"source_name": name}
                    await self.webhook(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


_METHODS = frozenset({"POST", "PUT"})


def create_app(runtime: ReceiverRuntime | None = None, *, standalone: bool = False) -> FastAPI:
    """Return the receiver app; without ``runtime`` its lifespan builds one from the config.

    :param standalone: the app runs on its own under uvicorn, not mounted in the API server:
        its routes get the ``/airhook`` prefix the mount would have given them, and it serves an
        unauthenticated ``GET /airhook/receiver/health`` instead of the stats route, which needs
        the API server's Airflow authentication.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = runtime
        if started is None:
            try:
                started = ReceiverRuntime.start()
            except Exception:
                if standalone:
                    # Nothing else runs in this process: exit (uvicorn's status 3) so that its
                    # supervisor sees the failure, rather than answer 503 to every delivery.
                    log.exception("airhook receiver could not start")
                    raise
                # Never take the API server down: the receiver answers 503 until fixed.
                log.exception("airhook receiver could not start; webhooks answer 503")
        app.state.runtime = started
        if standalone:
            # The process is ours: move everything loaded so far (Airflow's configuration and
            # modules, the catalog's compiled schemas) out of the garbage collector's reach.
            # Full collections then walk only what requests allocate; before, each one walked
            # the whole heap, and those pauses were most of the ack p99 (~140 ms → ~25 ms).
            gc.collect()
            gc.freeze()
        yield
        if started is not None and runtime is None:
            started.stop()

    # No OpenAPI document or docs pages: a plugin app is served without Airflow's login.
    app = ReceiverApp(
        title="airhook receiver",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    prefix = STANDALONE_PREFIX if standalone else ""
    app.webhooks_path = f"{prefix}/webhooks/"
    app.webhook = WebhookEndpoint(app)
    app.router.routes.insert(
        0,
        Route(
            f"{prefix}/webhooks/{{source_name}}",
            app.webhook,
            methods=sorted(_METHODS),
            name="receive",
            include_in_schema=False,
        ),
    )

    if standalone:

        @app.get(f"{prefix}/receiver/health", include_in_schema=False)
        async def health(request: Request) -> Response:
            """Whether this process can receive (for a load balancer), and its backpressure
            state: no per-source counts, no names."""
            current: ReceiverRuntime | None = request.app.state.runtime
            return Response(
                orjson.dumps(_health(current)),
                status_code=200 if current is not None else 503,
                media_type="application/json",
            )

        return app

    from airflow.api_fastapi.core_api.security import requires_authenticated

    @app.get("/receiver/stats", dependencies=[Depends(requires_authenticated())])
    async def stats(request: Request) -> dict[str, Any]:
        """Counts of deliveries by source and outcome, in this API server process."""
        current: ReceiverRuntime | None = request.app.state.runtime
        return {**_health(current), "sources": current.metrics.snapshot() if current else {}}

    return app


def create_standalone_app() -> FastAPI:
    """The app ``python -m airhook.receiver`` serves (a uvicorn factory, imported per worker)."""
    from airhook.airflow_internals import initialize_metrics

    initialize_metrics()  # the API server does it for itself; here nobody else would
    return create_app(standalone=True)


def _health(current: ReceiverRuntime | None) -> dict[str, Any]:
    """Whether the receiver runs, and what its backpressure sees: the undispatched backlog
    (all processes, counted up to the bound), this process's writer queue, and whether
    deliveries are being answered 503 now."""
    if current is None:
        return {"running": False}
    pressure = current.backpressure
    if pressure is None:
        return {"running": True}
    return {
        "running": True,
        "backlog": pressure.backlog,
        "backlog_bound": pressure.backlog_bound,
        "writer_queue": current.writer.queued(),
        "writer_queue_bound": pressure.queue_bound,
        "backpressure": pressure.over(),
    }


def _reject(
    runtime: ReceiverRuntime, source: str, status: int, reason: str, **details: Any
) -> _Answer:
    runtime.metrics.count(source, reason, rejected=True)
    # Reason codes only: never a header, a signature or a payload value.
    log.warning("airhook rejected a delivery to %s: %d %s", source, status, reason)
    return _error(status, reason, **details)
