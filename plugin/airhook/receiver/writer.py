"""Group commit: one thread records queued deliveries together, one transaction per batch.

Each request waits for its own row's commit before it is acknowledged, so an acknowledged event
is durable; while one batch commits, the next one queues up, so the fsync is paid once per batch
instead of once per request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from airhook.store.inbox import InboxRepository, NewEvent, Recorded

__all__ = ["GroupCommitWriter"]

log = logging.getLogger(__name__)

_Item = tuple[NewEvent, asyncio.AbstractEventLoop, "asyncio.Future[Recorded]"]


def _resolve(future: asyncio.Future[Recorded], result: Recorded | None, error: Any) -> None:
    if future.done():  # the request was cancelled (client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _resolve_all(outcomes: list[tuple[asyncio.Future[Recorded], Recorded | None, Any]]) -> None:
    for future, result, error in outcomes:
        _resolve(future, result, error)


def _hand_back(batch: list[_Item], results: list[Recorded | None], error: Any) -> None:
    """Resolve each request's future in its own event loop: one wake-up per loop and batch.

    ``call_soon_threadsafe`` writes to the loop's self-pipe; once per request that was a system
    call and a loop iteration each, now it is one per batch (each process has one loop).
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for (_, loop, future), result in zip(batch, results, strict=True):
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_all, outcomes)
        except RuntimeError:  # that loop is closed: its requests are gone
            log.debug("airhook writer: an event loop closed before its answers")


def _describe(error: BaseException) -> str:
    """Name a store error by the driver's exception type and error code, never its message."""
    origin = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    name = f"{type(origin).__module__}.{type(origin).__qualname__}"
    code = getattr(origin, "pgcode", None) or getattr(origin, "sqlite_errorname", None)
    return f"{name} {code}" if code else name


class GroupCommitWriter:
    """Record inbox events from async request handlers, committed in batches by one thread."""

    def __init__(
        self,
        inbox: InboxRepository,
        *,
        on_commit: Callable[[], None] = lambda: None,
        max_batch: int = 512,
    ) -> None:
        self._inbox = inbox
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="airhook-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()
        self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        """Record what is queued, then stop."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    async def record(self, event: NewEvent) -> Recorded:
        """Queue ``event`` and return once its batch is committed (or raise the store's error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recorded] = loop.create_future()
        self._queue.put((event, loop, future))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        try:
            outcomes = self._inbox.record([event for event, _, _ in batch])
        except Exception as exc:
            # No traceback and no message: a database error quotes the statement's parameters
            # (SQLAlchemy) or the failing row (PostgreSQL's DETAIL), that is, the payloads.
            log.error(
                "airhook could not record %d deliveries (%s); answering 503",
                len(batch),
                _describe(exc),
            )
            _hand_back(batch, [None] * len(batch), exc)
            return
        _hand_back(batch, list(outcomes), None)
        if any(outcome.status == "created" for outcome in outcomes):
            self._on_commit()
