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

from airhook import metrics
from airhook.store.errors import describe_error
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


def _hand_back(batch: list[_Item], outcomes: list[tuple[Recorded | None, Any]]) -> None:
    """Resolve each request's future (with its result, or its error) in its own event loop:
    one wake-up per loop and batch.

    ``call_soon_threadsafe`` writes to the loop's self-pipe; once per request that was a system
    call and a loop iteration each, now it is one per batch (each process has one loop).
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for (_, loop, future), (result, error) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_all, answers)
        except RuntimeError:  # that loop is closed: its requests are gone
            log.debug("airhook writer: an event loop closed before its answers")


def _about_the_data(error: BaseException) -> bool:
    """Whether the database refused the rows rather than failed: a value it cannot store (a
    driver's ``ValueError``, SQL's data exceptions) or a constraint."""
    import sqlalchemy as sa

    if isinstance(error, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    origin = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    # The inbox's hot path talks to the driver: its errors come unwrapped, named as DB-API 2.0
    # names them in every driver.
    if any(cls.__name__ in ("DataError", "IntegrityError") for cls in type(origin).__mro__):
        return True
    return isinstance(origin, ValueError)  # psycopg2 refuses a NUL in a string this way


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

    def queued(self) -> int:
        """How many deliveries wait for the writer thread (approximate, lock-free)."""
        return self._queue.qsize()

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
            recorded = self._inbox.record([event for event, _, _ in batch])
            outcomes: list[tuple[Recorded | None, Any]] = [(r, None) for r in recorded]
        except Exception as exc:
            # No traceback and no message: a database error quotes the statement's parameters
            # (SQLAlchemy) or the failing row (PostgreSQL's DETAIL), that is, the payloads.
            log.error(
                "airhook could not record %d deliveries (%s)", len(batch), describe_error(exc)
            )
            if len(batch) > 1 and _about_the_data(exc):
                # One row the database refuses must not fail the others of its batch (each
                # would be retried by its sender, and meet the same row again): one at a time.
                outcomes = [self._write_one(event) for event, _, _ in batch]
            else:
                outcomes = [(None, exc)] * len(batch)  # the database itself: every one is 503
        _hand_back(batch, outcomes)
        created = sum(
            1 for result, _ in outcomes if result is not None and result.status == "created"
        )
        if created:
            metrics.incr("airhook.inbox.recorded", created)
            self._on_commit()

    def _write_one(self, event: NewEvent) -> tuple[Recorded | None, Any]:
        try:
            return self._inbox.record([event])[0], None
        except Exception as exc:
            log.error("airhook could not record a delivery (%s)", describe_error(exc))
            return None, exc
