"""The background sender: due and lapsed deliveries go out without anyone acting.

A thread beside the dispatcher, in every process whose receiver app starts (each API server
process, the standalone receiver). Every ``[airhook] sender_poll_seconds`` it sends a bounded
batch of due deliveries, as ``airhook deliveries deliver-due`` would: retries whose time has
come, and deliveries whose claim lapsed (their sender crashed). No lease: the outbox's claims
(:mod:`airhook.store.outbox.claims`) give each delivery to one sender at a time, across
processes and replicas, so many senders share the work rather than stand by.

Metrics: ``airhook.sender.lag_seconds`` (gauge, each round: how long the oldest due delivery
has waited; 0 when none is due) and ``airhook.sender.sent`` (counter: deliveries attempted).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from airhook import metrics
from airhook.background import Periodic
from airhook.store.errors import describe_error
from airhook.store.times import utc_now

if TYPE_CHECKING:
    from airhook.core.catalog import Catalog
    from airhook.delivery.engine import DeliveryEngine
    from airhook.store.engine import Store

__all__ = ["BATCH_SIZE", "LAG_METRIC", "SENT_METRIC", "BackgroundSender", "start_configured_sender"]

log = logging.getLogger(__name__)

LAG_METRIC = "airhook.sender.lag_seconds"
SENT_METRIC = "airhook.sender.sent"
#: Most deliveries claimed in one round by default (``[airhook] sender_batch_size``): a round's
#: requests finish before stop() can end it.
BATCH_SIZE = 500


class BackgroundSender:
    """Send due deliveries every ``poll_seconds``, at most ``batch_size`` per round.

    Call :meth:`start` once per process and :meth:`stop` at shutdown. A failed round is logged
    and the next one comes at the next poll: the thread never ends on an error.
    """

    def __init__(
        self, engine: DeliveryEngine, *, poll_seconds: float = 5.0, batch_size: int = BATCH_SIZE
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds is positive (0 means: start no sender)")
        if batch_size < 1:
            raise ValueError("batch_size is at least 1")
        self._engine = engine
        self._batch_size = batch_size
        # A full batch is followed by the next at once: there may be more due.
        self._loop = Periodic(
            "airhook sender", lambda: self.run_once() >= batch_size, poll_seconds, at_once=True
        )

    @property
    def _thread(self) -> threading.Thread | None:
        return self._loop.thread

    def start(self) -> None:
        """Start the sender thread."""
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread: at once between rounds, after its requests within one."""
        self._loop.stop(timeout)

    def run_once(self) -> int:
        """One round: report the lag, send up to a batch of due deliveries; return how many."""
        now = utc_now()
        oldest = self._engine.outbox.oldest_due(now)
        lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.gauge(LAG_METRIC, lag)
        if oldest is None:
            return 0
        sent = self._engine.deliver(limit=self._batch_size).deliveries
        if sent:
            metrics.incr(SENT_METRIC, sent)
            log.info("airhook sender: %d due deliveries attempted (lag %.1fs)", sent, lag)
        return sent


def start_configured_sender(
    store: Store, catalog: Catalog | None = None
) -> BackgroundSender | None:
    """Start a sender as ``[airhook] sender_poll_seconds`` says (0: none); return it.

    Never raises: a sender that cannot start is logged, and the process goes on without it.
    """
    from airhook import config

    try:
        poll = config.get_float("sender_poll_seconds")
        if poll <= 0:
            return None
        from airhook.crypto import airflow_cipher
        from airhook.delivery.engine import DeliveryEngine

        sender = BackgroundSender(
            DeliveryEngine(store, airflow_cipher(), catalog=catalog),
            poll_seconds=poll,
            batch_size=config.get_int("sender_batch_size"),
        )
        sender.start()
    except Exception as exc:
        log.error("airhook sender could not start (%s); due deliveries wait", describe_error(exc))
        return None
    return sender
