"""Backpressure: answer 503 with ``Retry-After`` while the receiver cannot keep up.

Two bounds, each optional (``[airhook] backpressure_*``):

- **the undispatched backlog**, across every process sharing the store: recorded events the
  dispatcher has not turned into asset events yet. Past it, recording more only lengthens the
  wait before any DAG sees them (and the store's growth); the sender is asked to come back.
- **this process's writer queue**: deliveries waiting for the group-commit writer. Past it the
  store is not keeping up, and each of them would wait, holding its sender's connection, until
  the sender times out (which the sender counts as a failure too, but later and without
  ``Retry-After``).

Why a 503 and not a slower answer: a 503 is answered at once, is retried by senders that retry
at all (``docs/platforms/``), and records nothing, so nothing is acknowledged that might be
lost. The backlog is counted by a thread every ``backpressure_check_seconds`` (one indexed,
bounded count), never per request; the writer queue's length is read per request (a lock-free
size). Hence the backlog bound is soft: it may be passed by what arrives within one check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from airhook import metrics
from airhook.background import Periodic
from airhook.store.errors import describe_error

__all__ = ["Backpressure"]

log = logging.getLogger(__name__)


class Backpressure:
    """Whether the receiver should refuse deliveries for now; measures the backlog in a thread.

    :param count_backlog: counts undispatched events up to the limit it is given.
    :param writer_queue: the writer's current queue length.
    :param backlog_bound: refuse from this many undispatched events (0: no bound).
    :param queue_bound: refuse from this many queued deliveries (0: no bound).
    :param check_seconds: how often the backlog is counted.
    """

    def __init__(
        self,
        count_backlog: Callable[[int], int],
        writer_queue: Callable[[], int],
        *,
        backlog_bound: int,
        queue_bound: int,
        check_seconds: float = 1.0,
    ) -> None:
        self._count_backlog = count_backlog
        self._writer_queue = writer_queue
        self.backlog_bound = max(0, backlog_bound)
        self.queue_bound = max(0, queue_bound)
        #: undispatched events at the last count, at most ``backlog_bound`` (10,000 without a bound)
        self.backlog = 0
        self._refusing_since: float | None = None
        self._loop = Periodic("airhook backpressure", self._round, check_seconds, at_once=False)

    def start(self) -> None:
        """Count the backlog once now (so the first request knows it), then in a thread."""
        self.check()
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop counting."""
        self._loop.stop(timeout)

    def _round(self) -> bool:
        self.check()
        return False

    def check(self) -> None:
        """Count the backlog now (up to the bound; up to 10,000 when there is none, for the
        gauge and the health answer); keep the last count when the store cannot answer."""
        try:
            self.backlog = self._count_backlog(self.backlog_bound or 10_000)
        except Exception as exc:  # the writer will meet the same store: it answers 503 itself
            log.warning(
                "airhook could not count the undispatched backlog (%s)", describe_error(exc)
            )
            return
        metrics.gauge("airhook.inbox.backlog", self.backlog)
        metrics.gauge("airhook.receiver.writer_queue", self._writer_queue())

    def over(self) -> bool:
        """Whether a bound is passed now (the backlog as last counted, the queue as it is)."""
        queued = self._writer_queue() if self.queue_bound else 0
        return (self.backlog_bound > 0 and self.backlog >= self.backlog_bound) or (
            self.queue_bound > 0 and queued >= self.queue_bound
        )

    def refuse(self) -> bool:
        """Whether a delivery arriving now should be answered 503; logs when that starts and
        ends (not per delivery: under a flood that would be a line per request)."""
        over = self.over()
        if over and self._refusing_since is None:
            self._refusing_since = time.monotonic()
            log.warning(
                "airhook receiver is answering 503 (backpressure): %d undispatched events "
                "(bound %d), %d deliveries queued for the writer (bound %d)",
                self.backlog,
                self.backlog_bound,
                self._writer_queue(),
                self.queue_bound,
            )
        elif not over and self._refusing_since is not None:
            log.warning(
                "airhook receiver accepts deliveries again after %.1f s of backpressure",
                time.monotonic() - self._refusing_since,
            )
            self._refusing_since = None
        return over
