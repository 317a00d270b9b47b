"""The queue keeper's watches: (asset, DAG) pairs whose dispatched events a run must consume.

A watch says: Airflow queued ``dag_id`` for the asset events of ``asset_id`` stamped between
``since`` and ``until`` (Airflow's ids and the dispatching host's clock, as Airflow stores them).
The dispatcher widens a pair's watch with every round that queues that DAG and forgets it once
every event in it was consumed; ``airhook.requeue`` explains why it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from airhook.store.engine import Store
from airhook.store.tables import queue_watches
from airhook.store.times import aware, to_utc

__all__ = ["QueueWatch", "QueueWatchRepository"]


@dataclass(frozen=True)
class QueueWatch:
    """Events of one asset, stamped in ``[since, until]``, that one DAG's runs must consume."""

    asset_id: int
    dag_id: str
    since: datetime
    until: datetime


class QueueWatchRepository:
    """Widen, list and forget watches."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def widen(self, watches: Sequence[QueueWatch]) -> None:
        """Add these watches, or widen a pair's existing watch to cover them too."""
        if not watches:
            return
        table = queue_watches
        insert: Any
        if self._store.is_sqlite:
            insert = sqlite.insert(table)
            # Times are stored as UTC text of one format: min/max compare them as times.
            earliest: Any = sa.func.min(table.c.since, insert.excluded.since)
            latest: Any = sa.func.max(table.c.until, insert.excluded.until)
        else:
            insert = postgresql.insert(table)
            earliest = sa.func.least(table.c.since, insert.excluded.since)
            latest = sa.func.greatest(table.c.until, insert.excluded.until)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.asset_id, table.c.dag_id],
            set_={"since": earliest, "until": latest},
        )
        rows = [
            {
                "asset_id": w.asset_id,
                "dag_id": w.dag_id,
                "since": to_utc(w.since),
                "until": to_utc(w.until),
            }
            # One row per pair in a statement: PostgreSQL refuses to update a row twice.
            for w in _merged(watches)
        ]
        with self._store.begin() as connection:
            connection.execute(statement, rows)

    def due(
        self, quiet_since: datetime, open_since: datetime, limit: int = 500
    ) -> list[QueueWatch]:
        """Return the watches to check now, oldest first: those no round has widened since
        ``quiet_since``, and those that have been open since before ``open_since`` (under steady
        load a watch keeps being widened)."""
        with self._store.read() as connection:
            rows = connection.execute(
                sa.select(queue_watches)
                .where(
                    sa.or_(
                        queue_watches.c.until <= to_utc(quiet_since),
                        queue_watches.c.since <= to_utc(open_since),
                    )
                )
                .order_by(queue_watches.c.until)
                .limit(limit)
            ).all()
        return [_watch(row) for row in rows]

    def all(self) -> list[QueueWatch]:
        """Every watch (for tests and the CLI)."""
        with self._store.read() as connection:
            rows = connection.execute(
                sa.select(queue_watches).order_by(queue_watches.c.until)
            ).all()
        return [_watch(row) for row in rows]

    def narrow(self, watch: QueueWatch, since: datetime) -> None:
        """Move ``watch``'s start to ``since`` (every earlier event was consumed), unless a round
        changed the watch since it was read."""
        with self._store.begin() as connection:
            connection.execute(
                queue_watches.update()
                .where(
                    queue_watches.c.asset_id == watch.asset_id,
                    queue_watches.c.dag_id == watch.dag_id,
                    queue_watches.c.since == to_utc(watch.since),
                )
                .values(since=to_utc(since))
            )

    def forget(self, watch: QueueWatch) -> bool:
        """Delete ``watch`` unless a round widened it since it was read; return whether it went."""
        with self._store.begin() as connection:
            result = connection.execute(
                queue_watches.delete().where(
                    queue_watches.c.asset_id == watch.asset_id,
                    queue_watches.c.dag_id == watch.dag_id,
                    queue_watches.c.since == to_utc(watch.since),
                    queue_watches.c.until == to_utc(watch.until),
                )
            )
        return bool(result.rowcount)


def _merged(watches: Sequence[QueueWatch]) -> list[QueueWatch]:
    by_pair: dict[tuple[int, str], QueueWatch] = {}
    for w in watches:
        seen = by_pair.get((w.asset_id, w.dag_id))
        if seen is not None:
            w = QueueWatch(w.asset_id, w.dag_id, min(seen.since, w.since), max(seen.until, w.until))
        by_pair[(w.asset_id, w.dag_id)] = w
    return list(by_pair.values())


def _watch(row: sa.Row[tuple[object, ...]]) -> QueueWatch:
    since, until = aware(row.since), aware(row.until)
    if since is None or until is None:  # pragma: no cover - NOT NULL columns
        raise ValueError("a queue watch without its span")
    return QueueWatch(int(row.asset_id), str(row.dag_id), since, until)
