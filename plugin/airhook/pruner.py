"""The background pruner: what has been kept long enough goes without anyone acting.

A thread beside the dispatcher and the sender, in every process whose receiver app starts (each
API server process, the standalone receiver). Every ``[airhook] prune_interval_seconds`` (the
first time one interval after it starts) it prunes as ``[airhook] retention_events_days`` and
``retention_deliveries_days`` say, in batches of ``[airhook] prune_batch_size``
(:func:`airhook.retention.prune`: one short write transaction each, a pause between, so the
receiver keeps recording).

Why a lease (:class:`~airhook.store.leases.LeaseRepository`): many processes run the thread,
and pruning twice at once would only double the writes competing with the receiver's. One
process prunes per round; the others find the lease taken and wait for their next round. The
lease is renewed between batches and given up at the end of a round, so if its holder dies
another process takes over once it lapses. Two prunes at once would still be harmless: each
delete repeats its conditions, and a row goes once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from airhook.background import Periodic
from airhook.retention import Pruned, Retention, prune
from airhook.store.errors import describe_error
from airhook.store.leases import LeaseRepository
from airhook.store.retention import RetentionRepository
from airhook.store.times import utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from airhook.store.engine import Store

__all__ = ["LEASE_NAME", "BackgroundPruner", "start_configured_pruner"]

log = logging.getLogger(__name__)

LEASE_NAME = "pruner"


class BackgroundPruner:
    """Prune every ``interval_seconds``, ``batch_size`` rows per transaction, one process at a
    time (the lease ``pruner``).

    Call :meth:`start` once per process and :meth:`stop` at shutdown. A failed round is logged
    and the next one comes at the next interval: the thread never ends on an error.
    """

    def __init__(
        self,
        store: Store,
        retention: Retention,
        *,
        interval_seconds: float = 300.0,
        batch_size: int = 1000,
        lease_seconds: float = 60.0,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds is positive (0 means: start no pruner)")
        if batch_size < 1:
            raise ValueError("batch_size is at least 1")
        self._repository = RetentionRepository(store)
        self._leases = LeaseRepository(store)
        self._retention = retention
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        # The first round one interval after the start: see start().
        self._loop = Periodic("airhook pruner", self._round, interval_seconds, at_once=False)
        self._renewed = 0.0  # time.monotonic() of the last lease renewal

    def start(self) -> None:
        """Start the pruner thread; its first round comes one interval later.

        Why not at once: a process starting is busy enough (migrations, workers booting, a
        backlog to dispatch), and replicas restarted together would all try at that moment.
        """
        self._loop.start()

    @property
    def _thread(self) -> threading.Thread | None:
        return self._loop.thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread: at once between batches and rounds, after the batch in hand."""
        self._loop.stop(timeout)

    def _round(self) -> bool:
        self.run_once()
        return False  # a round prunes all it may: the next one is an interval later

    def run_once(self, now: datetime | None = None) -> Pruned | None:
        """One round, if this process gets the lease: prune what is past the cut-offs at
        ``now``; return what went (``None``: another process holds the lease)."""
        if not self._leases.acquire(LEASE_NAME, self.holder, self._lease_seconds):
            return None
        self._renewed = time.monotonic()
        try:
            cutoffs = self._retention.cutoffs(now or utc_now())
            pruned = prune(
                self._repository, cutoffs, batch_size=self._batch_size, between=self._between
            )
        finally:
            try:
                self._leases.release(LEASE_NAME, self.holder)
            except Exception as exc:  # it lapses by itself
                log.warning("airhook pruner could not give its lease up (%s)", describe_error(exc))
        if pruned.events or pruned.deliveries or pruned.dead_letters:
            log.info(
                "airhook pruner: %d events, %d deliveries (%d attempts) removed in %d batches",
                pruned.events,
                pruned.deliveries + pruned.dead_letters,
                pruned.attempts,
                pruned.batches,
            )
        return pruned

    def _between(self, pause: float) -> bool:
        """Wait ``pause`` between two batches; go on unless stopping or the lease is lost."""
        if self._loop.stopping.wait(pause):
            return False
        if time.monotonic() - self._renewed < self._lease_seconds / 3:
            return True
        if self._leases.acquire(LEASE_NAME, self.holder, self._lease_seconds):
            self._renewed = time.monotonic()
            return True
        log.warning("airhook pruner %s lost its lease mid-round; stopping the round", self.holder)
        return False


def start_configured_pruner(store: Store) -> BackgroundPruner | None:
    """Start a pruner as ``[airhook] prune_interval_seconds`` says (0: none), with the
    configured retention and batch size; return it (``None`` when none started: also when
    everything is kept for ever).

    Never raises: a pruner that cannot start is logged, and the process goes on without it.
    """
    from airhook import config

    try:
        interval = config.get_float("prune_interval_seconds")
        if interval <= 0:
            return None
        retention = Retention.configured()
        if retention.keeps_everything:
            return None
        pruner = BackgroundPruner(
            store,
            retention,
            interval_seconds=interval,
            batch_size=config.get_int("prune_batch_size"),
        )
        pruner.start()
    except Exception as exc:
        log.error("airhook pruner could not start (%s); nothing is pruned", describe_error(exc))
        return None
    return pruner
