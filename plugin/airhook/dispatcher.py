"""Turn recorded inbox events into Airflow asset events, in batches, exactly once.

Runs as a thread in API server processes (the only airhook component allowed to write to
Airflow's metadata DB). Many processes may run it; a lease in the airhook store lets exactly one
dispatch at a time, and another takes over within the lease time if that one dies.

Exactly once across two databases, without a shared transaction:

1. count a dispatch attempt on the batch's inbox rows (airhook store, committed);
2. in one Airflow transaction, which first takes a lock that one round at a time can hold
   until its commit, read the rows' state again and create the asset events, skipping any
   event marked meanwhile and any whose id Airflow already has, which can only be the case for
   rows another round has begun too (a crash between steps 3 and 4 of an earlier round, or a
   round that stalled while another dispatcher took over);
3. commit Airflow's transaction;
4. mark the rows dispatched (airhook store).

A crash before 3 leaves nothing in Airflow and the rows undispatched: they are dispatched again.
A crash between 3 and 4 leaves asset events in Airflow: the next round finds their ids in step 2
and only marks the rows. Airflow's asset listeners are told of the new asset events only after 3,
so they never hear of an event that was rolled back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airhook import airflow_internals as airflow
from airhook import metrics
from airhook.core.asset_uris import uris_for
from airhook.core.errors import LeaseLostError
from airhook.requeue import QueueKeeper
from airhook.store.engine import Store
from airhook.store.errors import describe_error
from airhook.store.inbox import NEW_EVENTS_CHANNEL, InboxEvent, InboxRepository
from airhook.store.leases import LeaseRepository

__all__ = ["LEASE_NAME", "Dispatcher", "LeaseLostError", "asset_extra"]

log = logging.getLogger(__name__)

LEASE_NAME = "dispatcher"


#: The shortest pause between two rounds that wrote to an SQLite metadata DB.
_SQLITE_YIELD_SECONDS = 0.1


def asset_extra(event: InboxEvent, payload_max_bytes: int) -> dict[str, Any]:
    """Return the ``extra`` of the asset events made from ``event``."""
    extra: dict[str, Any] = {
        airflow.EVENT_ID_KEY: event.id,
        "source": event.source,
        "profile": event.profile,
        "event": event.event,
        "kind": event.kind,
        "received_at": event.received_at.isoformat(),
    }
    if event.redispatches:
        # Which dispatch of the event this is: an earlier one's asset events are not this one's.
        extra[airflow.REDISPATCH_KEY] = event.redispatches
    if len(event.body.encode("utf-8")) <= payload_max_bytes:
        extra["payload"] = event.payload()
    else:
        # Too large for Airflow's metadata DB: tasks read it from the store by id.
        extra["payload"] = None
        extra["payload_in_store_only"] = True
    return extra


class Dispatcher:
    """Dispatch inbox events to Airflow assets; call :meth:`start` once per process."""

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.2,
        payload_max_bytes: int = 65536,
        lease_seconds: float = 15.0,
        check_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._inbox = InboxRepository(store)
        self._leases = LeaseRepository(store)
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._payload_max_bytes = payload_max_bytes
        self._lease_seconds = lease_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        #: set once the listener listens (PostgreSQL): commits from then on wake the dispatcher
        self.listening = threading.Event()
        self._lease_renewed_at: datetime | None = None
        self.keeper = QueueKeeper(store)
        self._check_seconds = check_seconds
        self._next_check = 0.0
        #: how long the last round held Airflow's database (its write lock, on SQLite)
        self.last_round_seconds = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher thread (and, on PostgreSQL, its listener)."""
        self.listen()
        self._thread = threading.Thread(target=self._run, name="airhook-dispatcher", daemon=True)
        self._thread.start()

    def listen(self) -> None:
        """On PostgreSQL, wake the dispatcher whenever any process commits new inbox events.

        Why: a standalone receiver, or another API server, records events this process's
        dispatcher would otherwise find only at its next poll (``dispatch_poll_seconds``). The
        inbox insert notifies a channel in its transaction (PostgreSQL delivers it at the
        commit); a thread here listens on a connection of its own. Polling stays as the
        fallback, so a lost connection only costs latency. SQLite has no such channel.
        """
        if self._store.is_sqlite or self._listener is not None:
            return
        self._listener = threading.Thread(
            target=self._listen, name="airhook-dispatcher-listener", daemon=True
        )
        self._listener.start()

    def _listen(self) -> None:
        import select

        while not self._stop.is_set():
            connection = None
            try:
                connection = self._store.write_engine.raw_connection()
                dbapi: Any = connection.driver_connection
                if not hasattr(dbapi, "poll") or not hasattr(dbapi, "notifies"):
                    log.info("airhook dispatcher: the driver cannot LISTEN; polling only")
                    return
                dbapi.autocommit = True
                cursor = dbapi.cursor()
                cursor.execute(f"LISTEN {NEW_EVENTS_CHANNEL}")
                cursor.close()
                self.listening.set()
                while not self._stop.is_set():
                    readable, _, _ = select.select([dbapi], [], [], 1.0)
                    if readable:
                        dbapi.poll()
                        if dbapi.notifies:
                            dbapi.notifies.clear()
                            self._wake.set()
            except Exception as exc:
                log.warning(
                    "airhook dispatcher: listening for new events failed (%s); polling meanwhile",
                    type(exc).__name__,
                )
                self.listening.clear()
                self._stop.wait(5.0)
            finally:
                if connection is not None:
                    # In autocommit and listening: it must not go back into the pool.
                    connection.invalidate()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current batch and give the lease up."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.join(timeout)
        try:
            self._leases.release(LEASE_NAME, self.holder)
        except Exception:
            log.exception("airhook dispatcher could not release its lease")

    def wake(self) -> None:
        """Tell the dispatcher that new events were recorded (called after each group commit)."""
        self._wake.set()

    # --- work ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._hold_lease():
                    self._stop.wait(min(self._lease_seconds / 3, 2.0))
                    continue
                dispatched = self.dispatch_once(fence=self._still_leader)
                if time.monotonic() >= self._next_check:
                    self.keeper.check()
                    self._next_check = time.monotonic() + self._check_seconds
            except LeaseLostError:
                log.warning(
                    "airhook dispatcher %s lost its lease mid-round; rolled back", self.holder
                )
                self._lease_renewed_at = None
                continue
            except Exception as exc:
                # Not log.exception: an error from Airflow's database quotes the rows being
                # written, and with them the payloads.
                log.error("airhook dispatcher round failed (%s); retrying", describe_error(exc))
                self._stop.wait(1.0)
                continue
            if dispatched and airflow.metadata_is_sqlite():
                # SQLite has one writer at a time and its busy handler is no queue: a scheduler
                # or DAG processor waiting to write polls with growing sleeps and can miss the
                # gaps between back-to-back rounds until its own timeout ("database is locked").
                # A pause at least as long as the round held the lock leaves them room.
                self._stop.wait(max(_SQLITE_YIELD_SECONDS, self.last_round_seconds))
            if dispatched < self._batch_size:
                self._wake.wait(self._poll_seconds)
                self._wake.clear()

    def _still_leader(self) -> bool:
        """Renew the lease now (not from the cache): called just before Airflow's commit."""
        now = datetime.now(timezone.utc)
        # The lease's own times are the store's clock on PostgreSQL; this one only paces renewals.
        if self._leases.acquire(LEASE_NAME, self.holder, self._lease_seconds):
            self._lease_renewed_at = now
            return True
        return False

    def _hold_lease(self) -> bool:
        now = datetime.now(timezone.utc)
        renewed = self._lease_renewed_at
        if renewed is not None and now - renewed < timedelta(seconds=self._lease_seconds / 3):
            return True
        if self._leases.acquire(LEASE_NAME, self.holder, self._lease_seconds):
            if renewed is None:
                log.info("airhook dispatcher %s holds the lease", self.holder)
            self._lease_renewed_at = now
            return True
        self._lease_renewed_at = None
        return False

    def dispatch_once(self, fence: Callable[[], bool] | None = None) -> int:
        """Dispatch one batch of undispatched events; return how many were handled.

        :param fence: called just before Airflow's transaction commits; if it returns False the
            transaction is rolled back (:class:`LeaseLostError`). The dispatcher thread passes a
            lease renewal, so that a round that stalled past the lease (while another process took
            over) gives way; should it still reach its commit (it stalled again, or the other
            dispatcher has gone and the lease is free), the lock of
            :func:`airhook.airflow_internals.dispatch_session`
            makes it skip what the other one dispatched.
        """
        events = self._inbox.undispatched(self._batch_size)
        if not events:
            return 0
        ids = [event.id for event in events]
        self._inbox.begin_dispatch(ids)
        self._write_to_airflow(events, fence)
        now = datetime.now(timezone.utc)
        self._inbox.mark_dispatched(ids, now)
        metrics.incr("airhook.dispatcher.dispatched", len(events))
        oldest = min(event.received_at for event in events)
        metrics.gauge("airhook.dispatcher.lag_seconds", max(0.0, (now - oldest).total_seconds()))
        return len(events)

    def _write_to_airflow(
        self, events: Sequence[InboxEvent], fence: Callable[[], bool] | None = None
    ) -> None:
        wanted = {uri for e in events for uri in uris_for(e.source, e.event, e.kind)}
        # Airflow calls its asset listeners inside register_asset_change unless given a sink:
        # collect them and call them once the transaction is committed.
        notifications: list[Callable[[], None]] = []
        started = time.monotonic()
        with airflow.dispatch_session() as session:
            # Read under that lock: another dispatcher's round for these events has committed
            # (its asset events are visible now, its marks may be) or has not begun writing.
            states = self._inbox.dispatch_states([e.id for e in events])
            done = {e.id for e in events if states.get(e.id, (True, 0))[0]}
            # Begun by more than this round (an earlier round that crashed or stalled, or
            # another dispatcher meanwhile): Airflow may have them already.
            contested = [e for e in events if e.id not in done and states[e.id][1] > 1]
            if contested:
                received = min(e.received_at for e in contested)
                done |= airflow.already_dispatched(
                    session, {e.id: e.redispatches for e in contested}, received
                )
            assets = airflow.assets_named(session, wanted)
            # asset id -> the extras of its new asset events, in inbox order
            planned: dict[int, list[dict[str, Any]]] = {}
            ordered: list[tuple[int, dict[str, Any]]] = []  # (asset id, extra), inbox order
            models: dict[int, Any] = {}
            for event in events:
                if event.id in done:
                    continue
                targets = [
                    assets[u]
                    for u in uris_for(event.source, event.event, event.kind)
                    if u in assets
                ]
                if not targets:
                    continue  # no DAG listens: the event stays readable in the inbox
                extra = asset_extra(event, self._payload_max_bytes)
                for model in targets:
                    planned.setdefault(model.id, []).append(extra)
                    ordered.append((model.id, extra))
                    models[model.id] = model
            if planned:
                airflow.lock_queue(session, set(planned))
            since = _stamp_clock()
            newest = airflow.create_asset_events(session, models, planned, ordered, notifications)
            if newest is not None:
                airflow.advance_queue(session, set(planned), newest)
            if fence is not None and not fence():
                raise LeaseLostError(self.holder)  # leaving the block rolls the session back
            if planned:
                self.keeper.watch(session, planned, since)
        self.last_round_seconds = time.monotonic() - started
        for notify in notifications:
            try:
                notify()
            except Exception:
                log.exception("an Airflow asset listener failed")
        created = sum(len(extras) for extras in planned.values())
        if created or done:
            log.info(
                "airhook dispatched %d events as %d asset events (%d found already dispatched)",
                len(events) - len(done),
                created,
                len(done),
            )


def _stamp_clock() -> datetime:
    """The clock Airflow stamps asset events with (``AssetEvent.timestamp``'s default is
    ``timezone.utcnow``: this host's clock, in UTC)."""
    return datetime.now(timezone.utc)
