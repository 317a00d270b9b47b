"""Make sure a DAG run consumes every asset event airhook dispatched for it: the queue keeper.

Why: Airflow 3.3's scheduler can leave asset events that a DAG was queued for to no run at all.
It reads a DAG's queue rows (``asset_dag_run_queue``), builds the run from the events up to the
newest row's ``created_at`` *as it read it*, and then deletes those rows by key. A dispatch round
that commits in between (it advances the rows' ``created_at`` to its newer events) loses its
rows: its events are newer than the run's ``run_after`` and no queue row is left to start the
next run, so they wait, possibly for ever, for another event of the same asset. On SQLite the
scheduler's reads take no lock; on PostgreSQL its ``FOR UPDATE`` comes after the read and the
ORM keeps the ``created_at`` it read first. Seen in a 60-second burst: the 112 events dispatched
in the last 0.1 s were consumed by no run. The same family of bugs is apache/airflow#70970
(fixed for 3.4 by apache/airflow#70972: queue rows reference their events) and #56050.

How: each dispatch round records, in the airhook store and before Airflow's commit, which DAGs
Airflow queued for which assets and the time span of the round's events (a *watch*, one per
asset and DAG, widened by later rounds). The dispatcher then checks its watches every few
seconds, in this order, each answer read after the previous one:

1. the DAG's queue row for the asset (still there: the scheduler will build a run from it);
2. the asset's events in the watch's span that no run of the DAG consumed.

None left: the watch is forgotten. Some left and a queue row that covers them: the run is coming.
Some left and no queue row: they are orphaned, and the keeper queues the DAG again, exactly once:
under the dispatch lock (and, on PostgreSQL, the DAG's row lock, which the scheduler takes before
building a run) it reads the DAG's newest asset-triggered run and writes a queue row stamped
with the newest orphan's time. The scheduler's next run then covers exactly the events after the
previous run, the orphans included, so no event is consumed twice. Events older than the DAG's
newest run can no longer be consumed by any run (only possible when a DAG also schedules on assets
other tasks update, on PostgreSQL): they are logged as an error and the watch is forgotten.

A DAG paused when Airflow dispatched the event was not queued, so it is not watched: as in
Airflow, its events start no run, even after unpausing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from airhook import airflow_internals as airflow
from airhook.store.engine import Store
from airhook.store.queue_watches import QueueWatch, QueueWatchRepository
from airhook.store.times import utc_now

__all__ = ["QueueKeeper", "Verdict"]

log = logging.getLogger(__name__)

#: How long a watch must have been left alone by dispatch rounds before it is checked.
QUIET_SECONDS = 2.0
#: A watch that rounds keep widening (steady load) is checked once it is this old.
OPEN_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    """What a check found for one watch."""

    state: Literal["consumed", "pending", "orphaned", "gone"]
    #: the earliest and newest event stamps no run of the DAG consumed (None when there are none)
    earliest: datetime | None = None
    newest: datetime | None = None


class QueueKeeper:
    """Record which DAGs each dispatch round queued, and queue them again for orphaned events."""

    def __init__(self, store: Store, *, quiet_seconds: float = QUIET_SECONDS) -> None:
        self._watches = QueueWatchRepository(store)
        self._quiet = timedelta(seconds=quiet_seconds)
        self._open = timedelta(seconds=OPEN_SECONDS)

    # --- in the dispatch round ------------------------------------------------------------------

    def watch(self, session: Any, asset_ids: Iterable[int], since: datetime) -> None:
        """Record which DAGs are queued for ``asset_ids`` after this round's events were written.

        Called in the round's Airflow transaction, after its events and before its commit: the
        store commits first, so a watch always exists for committed events (a watch whose round
        was rolled back finds no events, and is forgotten).

        :param since: read from the clock that stamps asset events, before the first was written.
        """
        until = utc_now()  # after the last event: the clock that stamped them
        queued = airflow.queued_dags(session, set(asset_ids))
        self._watches.widen(
            [QueueWatch(int(asset_id), str(dag_id), since, until) for asset_id, dag_id in queued]
        )

    # --- between rounds -------------------------------------------------------------------------

    def check(self, now: datetime | None = None) -> int:
        """Check the watches that are due; queue DAGs again for orphaned events.

        Return how many DAGs were queued again.
        """
        now = now or utc_now()
        requeued = 0
        for watch in self._watches.due(now - self._quiet, now - self._open):
            verdict = self.inspect(watch)
            if verdict.state == "orphaned":
                verdict = self._requeue(watch)
                requeued += verdict.state == "pending"
            self._settle(watch, verdict)
        return requeued

    def inspect(self, watch: QueueWatch) -> Verdict:
        """Read, without locks, what became of ``watch``'s events."""
        asset, dag = watch.asset_id, watch.dag_id
        with airflow.read_session() as session:
            if not airflow.still_scheduled(session, asset, dag):
                return Verdict("gone")
            queued_at = airflow.queued_at(session, asset, dag)  # first: see the docstring
            earliest, newest = airflow.unconsumed(session, asset, dag, watch.since, watch.until)
        return _verdict(queued_at, earliest, newest)

    def _requeue(self, watch: QueueWatch) -> Verdict:
        """Queue ``watch``'s DAG again for its orphaned events, if they still are; return what
        was found under the locks (``pending`` once queued)."""
        asset, dag = watch.asset_id, watch.dag_id
        with airflow.dispatch_session() as session:
            airflow.lock_dag(session, dag)
            queued_at = airflow.queued_at(session, asset, dag)
            earliest, newest = airflow.unconsumed(session, asset, dag, watch.since, watch.until)
            verdict = _verdict(queued_at, earliest, newest)
            if verdict.state != "orphaned" or newest is None:
                return verdict
            last_run = airflow.newest_asset_run(session, dag)
            if last_run is not None and newest <= last_run:
                log.error(
                    "airhook: asset events of asset %d stamped up to %s were consumed by no run "
                    "of DAG %s, and its newest run (run_after %s) is later: no run can consume "
                    "them now",
                    watch.asset_id,
                    newest.isoformat(),
                    watch.dag_id,
                    last_run.isoformat(),
                )
                return Verdict("gone")
            airflow.queue(session, asset, dag, newest)
        log.info(
            "airhook queued DAG %s again for events of asset %d that no run consumed "
            "(stamped %s to %s; works around apache/airflow#70970)",
            watch.dag_id,
            watch.asset_id,
            earliest.isoformat() if earliest else "?",
            newest.isoformat(),
        )
        return Verdict("pending", earliest, newest)

    def _settle(self, watch: QueueWatch, verdict: Verdict) -> None:
        if verdict.state in ("consumed", "gone"):
            if not self._watches.forget(watch):
                # A round widened it meanwhile: what was checked is done with.
                self._watches.narrow(watch, watch.until)
        elif verdict.earliest is not None and verdict.earliest > watch.since:
            self._watches.narrow(watch, verdict.earliest)


def _verdict(
    queued_at: datetime | None, earliest: datetime | None, newest: datetime | None
) -> Verdict:
    if newest is None:
        return Verdict("consumed")
    if queued_at is not None and queued_at >= newest:
        return Verdict("pending", earliest, newest)
    return Verdict("orphaned", earliest, newest)
