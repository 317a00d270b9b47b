"""The receiver: a FastAPI app the Airflow API server mounts at ``/airhook``.

``POST`` or ``PUT`` ``/airhook/webhooks/<source>``:

====  =======================================================================================
202   recorded; ``{"id": …}``
200   a duplicate of an earlier delivery (``{"id": <first id>, "duplicate": true}``), or an
      authentic event the source does not take (``{"status": "ignored"}``)
400   not JSON, not an object, or nested too deep
401   signature, timestamp, token or credentials wrong or missing; a replayed request
403   client address outside the source's allow-list; source inactive
404   no such source
413   body larger than the limit
422   unknown event, or the event does not match its schema (``path`` says where)
503   the store could not record the delivery (the sender should retry)
====  =======================================================================================

Plugin apps are mounted without Airflow's authentication: every delivery authenticates itself
through its source. ``GET /airhook/receiver/stats`` needs an Airflow login.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from airhook import config
from airhook.catalog import Catalog, load_catalog
from airhook.errors import (
    PayloadParseError,
    PayloadValidationError,
    UnknownEventError,
    VerificationError,
)
from airhook.ids import new_event_id
from airhook.receiver.metrics import ReceiverMetrics
from airhook.receiver.pipeline import Ignored, check_delivery
from airhook.receiver.source_cache import SourceCache
from airhook.receiver.writer import GroupCommitWriter
from airhook.store.inbox import InboxRepository, NewEvent

__all__ = ["ReceiverRuntime", "create_app"]

log = logging.getLogger(__name__)

#: The metrics label of deliveries to no known source (no source name starts with ``_``).
UNKNOWN_SOURCE = "_unknown"


@dataclass
class ReceiverRuntime:
    """Everything one API server process needs to receive: built by the app's lifespan."""

    catalog: Catalog
    sources: SourceCache
    writer: GroupCommitWriter
    default_max_body: int
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    dispatcher: Any = None

    @classmethod
    def start(cls) -> ReceiverRuntime:
        """Migrate the store, load sources, start the writer and (if enabled) the dispatcher."""
        from airhook.crypto import airflow_cipher
        from airhook.dispatcher import Dispatcher
        from airhook.store import get_store
        from airhook.store.migrate import upgrade
        from airhook.store.sources import SourceRepository

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
        writer = GroupCommitWriter(
            InboxRepository(store), on_commit=dispatcher.wake if dispatcher else (lambda: None)
        )
        writer.start()
        return cls(
            catalog=catalog,
            sources=sources,
            writer=writer,
            default_max_body=config.get_int("max_body_bytes"),
            dispatcher=dispatcher,
        )

    def stop(self) -> None:
        """Finish queued writes, stop the threads."""
        self.writer.stop()
        self.sources.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()


def _error(status: int, error: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": error, **details}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """Return the body, or None as soon as it exceeds ``limit`` bytes (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(runtime: ReceiverRuntime | None = None) -> FastAPI:
    """Return the receiver app; without ``runtime`` its lifespan builds one from the config."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = runtime
        if started is None:
            try:
                started = ReceiverRuntime.start()
            except Exception:
                # Never take the API server down: the receiver answers 503 until fixed.
                log.exception("airhook receiver could not start; webhooks answer 503")
        app.state.runtime = started
        yield
        if started is not None and runtime is None:
            started.stop()

    app = FastAPI(title="airhook receiver", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime

    async def receive(source_name: str, request: Request) -> Response:
        current: ReceiverRuntime | None = request.app.state.runtime
        if current is None:
            return _error(503, "receiver_unavailable")
        prepared = current.sources.get(source_name)
        if prepared is None:
            # Counted under one label: a name the caller chose must not become a metric key.
            return _reject(current, UNKNOWN_SOURCE, 404, "unknown_source")
        source = prepared.source
        if not source.active:
            return _reject(current, source.name, 403, "source_inactive")
        body = await _read_body(request, source.max_body_bytes or current.default_max_body)
        if body is None:
            return _reject(current, source.name, 413, "too_large")
        client = request.client.host if request.client else None
        try:
            result = check_delivery(
                prepared, current.catalog, request.headers, body, client, now=time.time()
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
            return JSONResponse({"status": "ignored", "reason": result.reason}, status_code=200)
        event = NewEvent(
            id=new_event_id(),
            source=source.name,
            profile=source.profile,
            event=result.event,
            kind=result.kind,
            dedupe_key=result.dedupe_key,
            signature_digest=result.signature_digest,
            body=result.body,
            received_at=datetime.now(timezone.utc),
        )
        try:
            recorded = await current.writer.record(event)
        except Exception:
            current.metrics.count(source.name, "store_unavailable")
            return JSONResponse(
                {"error": "store_unavailable"}, status_code=503, headers={"Retry-After": "5"}
            )
        if recorded.status == "replayed":
            return _reject(current, source.name, 401, "replayed")
        if recorded.status == "duplicate":
            current.metrics.count(source.name, "duplicate")
            return JSONResponse({"id": recorded.id, "duplicate": True}, status_code=200)
        current.metrics.count(source.name, "accepted")
        return JSONResponse({"id": recorded.id}, status_code=202)

    app.add_api_route("/webhooks/{source_name}", receive, methods=["POST", "PUT"])

    from airflow.api_fastapi.core_api.security import requires_authenticated

    @app.get("/receiver/stats", dependencies=[Depends(requires_authenticated())])
    async def stats(request: Request) -> dict[str, Any]:
        """Counts of deliveries by source and outcome, in this API server process."""
        current: ReceiverRuntime | None = request.app.state.runtime
        if current is None:
            return {"running": False, "sources": {}}
        return {"running": True, "sources": current.metrics.snapshot()}

    return app


def _reject(
    runtime: ReceiverRuntime, source: str, status: int, reason: str, **details: Any
) -> JSONResponse:
    runtime.metrics.count(source, reason)
    # Reason codes only: never a header, a signature or a payload value.
    log.warning("airhook rejected a delivery to %s: %d %s", source, status, reason)
    return _error(status, reason, **details)
