"""Every use of Airflow's internals, in one place, each with its reason.

airhook talks to Airflow through its public interfaces where they exist (``airflow.sdk`` for
DAG authors: ``Asset``, ``dag``, hooks, operators, sensors, triggers; the plugin interface; the
auth manager). Metrics go through ``airflow.observability.stats``, the server components' module
(not underscored, yet not in Airflow's published public interface). Two jobs have no public API
in Airflow 3.3, and both run only in the API server, the one airhook component allowed to write to
Airflow's metadata DB:

- **turning recorded webhook events into asset events** (the dispatcher). Airflow's only way in
  is ``POST /api/v2/assets/events``, one HTTP request and one transaction per event: ~1,000
  events/s at best in the same process, and no way to make a batch exactly once with airhook's
  store. The dispatcher therefore writes through Airflow's own ``AssetManager`` in a session of
  its own: the ORM models ``AssetModel``, ``AssetEvent``, ``AssetDagRunQueue``; the listener hook
  ``AssetManager.nofity_asset_event_emitted`` (sic, Airflow's spelling) for events it inserts in
  bulk; the lock and queue-row fixes of apache/airflow#62501 and #70972, not in 3.3;
- **re-queueing DAGs whose queued events no run consumed** (the queue keeper): reads
  ``asset_dag_run_queue``, ``dagrun_asset_event``, ``dag_run`` and ``dag_schedule_asset_reference``
  and writes a queue row: apache/airflow#70970 (see ``airhook.requeue``);
- **showing which asset events and DAG runs a recorded event became** (the management API's
  event detail): Airflow's REST API lists asset events by asset, not by a key of their ``extra``,
  and does not link them to the runs that consumed them, so ``asset_events_of`` reads
  ``AssetEvent.extra`` and ``AssetEvent.created_dagruns``; and which DAGs a source's test event
  would start (``dags_scheduled_on`` reads ``dag_schedule_asset_reference`` by asset name).

Smaller uses: ``airflow.models.crypto.get_fernet`` (Airflow's key, so that one key encrypts
Airflow's connections and airhook's stored secrets alike; no public accessor) and
``airflow.utils.session.create_session`` for the sessions of the jobs above.

Why one module of ~500 lines: it is the seam. Everything a new Airflow minor can break is here and
nowhere else, so checking a new release means reading one file.

The supported Airflow range in ``setup.cfg`` is the one CI tests (3.3): a new minor release
can move any of these. ``tests/test_airflow_internals.py`` pins what is assumed here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa

from airhook.core.asset_uris import KIND_SCHEME, SOURCE_SCHEME
from airhook.store.chunks import chunks
from airhook.store.times import aware

__all__ = [
    "EVENT_ID_KEY",
    "REDISPATCH_KEY",
    "advance_queue",
    "already_dispatched",
    "asset_events_of",
    "assets_named",
    "create_asset_events",
    "dags_scheduled_on",
    "dispatch_session",
    "fernet",
    "lock_dag",
    "lock_queue",
    "metadata_is_sqlite",
    "newest_asset_run",
    "queue",
    "queued_at",
    "queued_dags",
    "read_session",
    "still_scheduled",
    "unconsumed",
]

log = logging.getLogger(__name__)

#: The key of an asset event's ``extra`` that holds the airhook event id.
EVENT_ID_KEY = "airhook_event_id"
#: The asset events of an event's n-th re-dispatch carry n under this key of their ``extra``.
REDISPATCH_KEY = "airhook_redispatch"
#: How far the clocks of the hosts that receive and dispatch events may disagree.
_CLOCK_MARGIN = timedelta(hours=1)
#: How long a round waits for a lock in Airflow's database (PostgreSQL) before it gives up.
LOCK_TIMEOUT_SECONDS = 15
#: The PostgreSQL advisory lock (transaction-scoped) that serialises dispatch rounds.
DISPATCH_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"airhook dispatcher").digest()[:8], "big", signed=True
)


_failed_metrics: set[str] = set()


def initialize_metrics() -> None:
    """Set Airflow's metrics up in a process Airflow did not start (the standalone receiver),
    as the API server does for itself; never fail."""
    try:
        from airflow.configuration import conf
        from airflow.observability.metrics import stats_utils
        from airflow.observability.stats import initialize

        initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
        )
    except Exception:
        log.warning("airhook could not set up Airflow's metrics", exc_info=True)


def _count_asset_updates(count: int) -> None:
    """Count ``asset.updates`` in Airflow's server metrics, as ``register_asset_change`` does
    for each asset event it makes (Airflow's own metric, so it goes where Airflow's go: the
    server components' stats module, not the public one airhook's own metrics use); never fail.
    """
    try:
        from airflow.observability.stats import Stats

        Stats.incr("asset.updates", count=count, tags={})
    except Exception:  # metrics must never break dispatching
        if not _failed_metrics:
            _failed_metrics.add("asset.updates")
            log.warning("airhook could not count asset.updates", exc_info=True)


def fernet() -> Any:
    """Airflow's Fernet (``[core] fernet_key``, with rotation), which airhook encrypts its stored
    credentials with, so that one key protects both. Airflow has no public accessor for it."""
    from airflow.models.crypto import get_fernet

    return get_fernet()


@contextmanager
def read_session() -> Iterator[Any]:
    """A session of Airflow's for reads (the queue keeper's checks)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        yield session


def metadata_is_sqlite() -> bool:
    """Whether Airflow's metadata DB is SQLite (one writer at a time)."""
    from airflow import settings

    return settings.engine is not None and settings.engine.dialect.name == "sqlite"


@contextmanager
def dispatch_session() -> Iterator[Any]:
    """A session of Airflow's, committed at the end, that holds the dispatch lock from its start.

    Why the lock: the lease keeps one dispatcher active, but a round can stall (a GC pause, a
    frozen VM) past its lease while another dispatcher takes over, dispatches the same events and
    goes away; the stalled round would then commit them a second time. Taken before a round reads
    what was already dispatched and held until its commit, this lock makes each round see every
    earlier round's asset events, and the queue keeper's re-queue see a settled queue.
    PostgreSQL: an advisory lock for the transaction. SQLite: its write lock, taken by a statement
    that changes nothing. Other databases (MySQL) rely on the lease alone.
    """
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            # A round frozen while it holds the lock must not stall every dispatcher until
            # PostgreSQL notices its dead connection: waits end with an error, and a retry.
            session.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(DISPATCH_LOCK_KEY)))
        elif dialect == "sqlite":
            session.execute(
                sa.update(AssetDagRunQueue)
                .where(sa.false())
                .values(created_at=AssetDagRunQueue.created_at)
                .execution_options(synchronize_session=False)
            )
        yield session


def assets_named(session: Any, names: set[str]) -> dict[str, Any]:
    """The asset models of these names (airhook names its assets by their URI as written:
    Airflow normalises the URI itself, ``airhook://rkt`` is stored as ``airhook://rkt/``)."""
    from airflow.models.asset import AssetModel

    return {
        model.name: model
        for model in session.scalars(sa.select(AssetModel).where(AssetModel.name.in_(names)))
    }


def already_dispatched(
    session: Any, dispatches: dict[str, int], received_since: datetime
) -> set[str]:
    """Return the airhook event ids among ``dispatches`` that Airflow has asset events for.

    :param dispatches: event id -> which dispatch of it is meant (0: the first; n: the n-th
        re-dispatch, whose asset events carry ``REDISPATCH_KEY``).

    :param received_since: when the earliest of them was received (the receiving host's clock;
        an asset event's timestamp is the dispatching host's: a margin allows for clocks that
        disagree).
    """
    from airflow.models.asset import AssetEvent, AssetModel

    since = received_since - _CLOCK_MARGIN
    # Only the event id out of each extra (JSON ->> on PostgreSQL, json_extract on SQLite),
    # compared in the database: an hour of asset events carries an hour of payloads.
    event_id = AssetEvent.extra[EVENT_ID_KEY].as_string()
    redispatch = AssetEvent.extra[REDISPATCH_KEY].as_string()
    found: set[str] = set()
    for wanted in chunks(list(dispatches)):
        found.update(
            found_id
            for found_id, number in session.execute(
                sa.select(event_id, redispatch)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(
                    sa.or_(
                        AssetModel.name.startswith(f"{SOURCE_SCHEME}://"),
                        AssetModel.name.startswith(f"{KIND_SCHEME}://"),
                    ),
                    AssetEvent.timestamp >= since,
                    event_id.in_(wanted),
                )
            )
            if int(number or 0) == dispatches[found_id]
        )
    return found


def asset_events_of(event_id: str, received_at: datetime) -> list[dict[str, Any]]:
    """The asset events an airhook event became (every dispatch of it), each with the DAG runs
    that consumed it: for the management API's event detail (API server only: it reads
    Airflow's metadata DB).

    Reads ``AssetEvent.extra`` and the ``created_dagruns`` relationship, neither of them public
    API (the public REST API lists asset events by asset, not by a key of their extra).
    """
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    since = received_at - _CLOCK_MARGIN
    found: list[dict[str, Any]] = []
    with create_session() as session:
        rows = session.execute(
            sa.select(AssetEvent, AssetModel.name)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetEvent.timestamp >= since,
                AssetEvent.extra[EVENT_ID_KEY].as_string() == event_id,
            )
            .order_by(AssetEvent.timestamp, AssetEvent.id)
        ).all()
        for asset_event, asset_name in rows:
            found.append(
                {
                    "asset": asset_name,
                    "timestamp": aware(asset_event.timestamp).isoformat(),  # type: ignore[union-attr]
                    "redispatch": int((asset_event.extra or {}).get(REDISPATCH_KEY, 0)),
                    "dag_runs": [
                        {"dag_id": run.dag_id, "run_id": run.run_id, "state": str(run.state)}
                        for run in asset_event.created_dagruns
                    ],
                }
            )
    return found


def dags_scheduled_on(asset_names: Sequence[str]) -> list[str]:
    """The DAG ids scheduled on any of these assets (by name): the DAGs a source's test event
    would start (the management API's source test; API server only).

    Reads ``dag_schedule_asset_reference``, which no public API lists by asset name.
    """
    from airflow.models.asset import AssetModel, DagScheduleAssetReference
    from airflow.utils.session import create_session

    with create_session() as session:
        return sorted(
            set(
                session.scalars(
                    sa.select(DagScheduleAssetReference.dag_id)
                    .join(AssetModel, DagScheduleAssetReference.asset_id == AssetModel.id)
                    .where(AssetModel.name.in_(list(asset_names)))
                )
            )
        )


def queued_dags(session: Any, asset_ids: set[int]) -> list[tuple[int, str]]:
    """The (asset id, DAG id) queue rows of these assets: the DAGs Airflow queued for them."""
    from airflow.models.asset import AssetDagRunQueue

    return [
        (int(asset_id), str(dag_id))
        for asset_id, dag_id in session.execute(
            sa.select(AssetDagRunQueue.asset_id, AssetDagRunQueue.target_dag_id).where(
                AssetDagRunQueue.asset_id.in_(asset_ids)
            )
        )
    ]


def create_asset_events(
    session: Any,
    models: dict[int, Any],
    planned: dict[int, list[dict[str, Any]]],
    ordered: list[tuple[int, dict[str, Any]]],
    notifications: list[Callable[[], None]],
) -> datetime | None:
    """Create the planned asset events in ``session``; return the newest one's timestamp.

    Airflow's ``register_asset_change`` does per event: load the asset with three joined
    relations, insert and flush the event, find the DAGs to queue and queue them. That is
    ~1.2 ms of CPU and a dozen statements per event, and each statement hands the GIL to the
    API server's saturated event loop and waits to get it back. For an asset with several events
    in a batch, only the last one needs any of that: the earlier ones are inserted together with
    one statement, and the last one goes through ``register_asset_change``, which queues the
    DAGs (once per asset per batch, as N calls would have left it), after them, so that it is the
    newest and the DAG run it queues includes them all. Listeners hear of every event, after
    the commit, as they would from N calls.

    Each asset's events keep their inbox order (timestamps, ids, listener calls); across assets
    they are grouped, which no DAG run can tell (each run reads its own assets' events).

    Only with Airflow's own asset manager: a custom ``[core] asset_manager_class`` may do
    anything per event, so it gets one ``register_asset_change`` call per event, in inbox order.
    """
    from airflow.assets.manager import AssetManager, asset_manager

    batched = type(asset_manager) is AssetManager
    if batched:
        earlier = [
            {"asset_id": asset_id, "extra": extra}
            for asset_id, extras in planned.items()
            for extra in extras[:-1]
        ]
        if earlier:
            _insert_asset_events(session, earlier, models, notifications)
        calls = [(asset_id, extras[-1]) for asset_id, extras in planned.items()]
    else:
        calls = ordered
    newest: datetime | None = None
    for asset_id, extra in calls:
        asset_event = asset_manager.register_asset_change(
            asset=models[asset_id], extra=extra, session=session, callback_sink=notifications
        )
        if asset_event is not None:
            stamp = asset_event.timestamp
            newest = stamp if newest is None or stamp > newest else newest
    return newest


def _insert_asset_events(
    session: Any,
    rows: list[dict[str, Any]],
    models: dict[int, Any],
    notifications: list[Callable[[], None]],
) -> None:
    """Insert asset events with one statement and queue their listener calls."""
    from airflow.assets.manager import AssetManager
    from airflow.listeners.types import AssetEvent as ListenerAssetEvent
    from airflow.models.asset import AssetEvent

    # Column defaults (the timestamp) are computed per row, in order.
    session.execute(sa.insert(AssetEvent), rows)
    serialized: dict[int, Any] = {}
    for row in rows:
        asset_id = row["asset_id"]
        asset = serialized.get(asset_id)
        if asset is None:
            asset = serialized[asset_id] = models[asset_id].to_serialized()
        notifications.append(partial(AssetManager.notify_asset_changed, asset=asset))
        emitted = ListenerAssetEvent(
            asset=asset,
            extra=row["extra"],
            source_dag_id=None,
            source_task_id=None,
            source_run_id=None,
            source_map_index=None,
            source_aliases=[],
            partition_key=None,
        )
        notifications.append(partial(AssetManager.nofity_asset_event_emitted, asset_event=emitted))
    # As register_asset_change counts each event it makes.
    _count_asset_updates(len(rows))


def lock_queue(session: Any, asset_ids: set[int]) -> None:
    """Lock the DAG-run queue rows of these assets before any of their new events is written.

    Why: on PostgreSQL the scheduler builds an asset-triggered run in one transaction that locks
    the DAG's queue rows (``FOR UPDATE SKIP LOCKED``), reads the events up to the newest row's
    ``created_at`` and deletes those rows. Had it locked a row first, Airflow's queueing in
    ``register_asset_change`` (``INSERT … ON CONFLICT DO NOTHING``) would find the row still there
    and add none, the scheduler would then delete it, and the new event would wait for some later
    event of its asset to run its DAG at all. Locking first waits for such a scheduler to finish
    (its rows are gone, so Airflow inserts new ones), or makes the scheduler skip the rows until
    this transaction has committed. SQLite ignores ``FOR UPDATE``: it serialises writers.
    """
    from airflow.models.asset import AssetDagRunQueue

    session.execute(
        sa.select(AssetDagRunQueue.asset_id)
        .where(AssetDagRunQueue.asset_id.in_(asset_ids))
        .with_for_update()
    ).all()


def advance_queue(session: Any, asset_ids: set[int], newest: datetime) -> None:
    """Make the DAG-run queue rows of these assets at least as new as the newest event.

    Why: in Airflow 3.3 a queue row (asset_dag_run_queue) that already exists when another event
    for its asset arrives keeps its old ``created_at``; the scheduler then builds the run from
    events up to that ``created_at`` only and deletes the row, so the newer event waits for some
    later event to be noticed at all (fixed upstream in apache/airflow#62501 and #70972). Moving
    ``created_at`` forward in the same transaction as the events, never backward, is what those
    fixes do for PostgreSQL. SQLite serialises this with the scheduler; on PostgreSQL the scheduler
    skips rows this transaction has locked until it commits.
    """
    from airflow.models.asset import AssetDagRunQueue

    session.execute(
        sa.update(AssetDagRunQueue)
        .where(AssetDagRunQueue.asset_id.in_(asset_ids), AssetDagRunQueue.created_at < newest)
        .values(created_at=newest)
        .execution_options(synchronize_session=False)
    )


def still_scheduled(session: Any, asset_id: int, dag_id: str) -> bool:
    """Whether the DAG still schedules on the asset."""
    from airflow.models.asset import DagScheduleAssetReference

    return (
        session.scalar(
            sa.select(sa.literal(1)).where(
                DagScheduleAssetReference.asset_id == asset_id,
                DagScheduleAssetReference.dag_id == dag_id,
            )
        )
        is not None
    )


def queued_at(session: Any, asset_id: int, dag_id: str) -> datetime | None:
    """The time of the DAG's queue row for the asset (None: not queued)."""
    from airflow.models.asset import AssetDagRunQueue

    value: datetime | None = session.scalar(
        sa.select(AssetDagRunQueue.created_at).where(
            AssetDagRunQueue.asset_id == asset_id,
            AssetDagRunQueue.target_dag_id == dag_id,
        )
    )
    return value


def unconsumed(
    session: Any, asset_id: int, dag_id: str, since: datetime, until: datetime
) -> tuple[datetime | None, datetime | None]:
    """The earliest and newest stamps of the asset's events in the watch that no run of its DAG
    consumed (one statement: one snapshot)."""
    from airflow.models.asset import AssetEvent, association_table
    from airflow.models.dagrun import DagRun

    consumed = (
        sa.select(sa.literal(1))
        .select_from(association_table)
        .join(DagRun, DagRun.id == association_table.c.dag_run_id)
        .where(association_table.c.event_id == AssetEvent.id, DagRun.dag_id == dag_id)
    )
    row = session.execute(
        sa.select(sa.func.min(AssetEvent.timestamp), sa.func.max(AssetEvent.timestamp)).where(
            AssetEvent.asset_id == asset_id,
            AssetEvent.timestamp >= since,
            AssetEvent.timestamp <= until,
            ~consumed.exists(),
        )
    ).one()
    return aware(row[0]), aware(row[1])


def newest_asset_run(session: Any, dag_id: str) -> datetime | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    value = session.scalar(
        sa.select(sa.func.max(DagRun.run_after)).where(
            DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED
        )
    )
    return aware(value)


def lock_dag(session: Any, dag_id: str) -> None:
    """Hold the DAG's row until commit: the scheduler locks it (``SKIP LOCKED``) before it builds
    a run, so no run of this DAG is built between the check and the new queue row. SQLite
    serialises writers: the dispatch lock already excludes the scheduler's writes."""
    from airflow.models.dag import DagModel

    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.select(DagModel.dag_id).where(DagModel.dag_id == dag_id).with_for_update()
        ).all()


def queue(session: Any, asset_id: int, dag_id: str, stamp: datetime) -> None:
    """Queue the DAG for the asset at ``stamp``, or move its queue row forward to it (never back).

    Under the dispatch lock nothing else writes this airhook asset's queue rows.
    """
    from airflow.models.asset import AssetDagRunQueue

    row = (AssetDagRunQueue.asset_id == asset_id) & (AssetDagRunQueue.target_dag_id == dag_id)
    existing = session.scalar(sa.select(AssetDagRunQueue.created_at).where(row))
    if existing is None:
        session.execute(
            sa.insert(AssetDagRunQueue).values(
                asset_id=asset_id, target_dag_id=dag_id, created_at=stamp
            )
        )
    elif aware(existing) < stamp:  # type: ignore[operator]
        session.execute(
            sa.update(AssetDagRunQueue)
            .where(row)
            .values(created_at=stamp)
            .execution_options(synchronize_session=False)
        )
