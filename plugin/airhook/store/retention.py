"""Retention: counting and deleting what has been kept long enough, one bounded batch at a time.

What may go, and nothing else:

- an inbox event that was dispatched, received before the cut-off and last dispatched before it
  (a re-dispatched event counts from its latest dispatch; an undispatched one never goes: the
  dispatcher has yet to send it, and may be checking Airflow for it after a crash);
- a delivery in one of the statuses asked for (``delivered``; the dead letters ``failed`` and
  ``dead`` only when purged on purpose) that finished before the cut-off, with its attempts.
  ``pending``, ``sending`` and ``paused`` deliveries have no finish time and never go.

Why each batch is chosen by a read and deleted by a second, short write transaction: on SQLite
the write lock is the receiver's too, so it is held only for the deletes. The delete repeats the
conditions, so a row that changed in between (re-dispatched, replayed) stays. On PostgreSQL the
rows are taken with ``SKIP LOCKED``: one a re-dispatch or a replay holds right now is left for a
later batch, with no wait and no deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airhook.store.chunks import chunks
from airhook.store.engine import Store
from airhook.store.outbox.records import FINAL_FAILURES
from airhook.store.tables import attempts, deliveries, inbox
from airhook.store.times import to_utc as _utc

__all__ = ["DEAD_LETTERS", "SETTLED", "Removed", "RetentionRepository"]

#: The deliveries retention removes on its own: delivered ones.
SETTLED: tuple[str, ...] = ("delivered",)
#: The dead letters (failed for good): kept until replayed or purged on purpose.
DEAD_LETTERS: tuple[str, ...] = FINAL_FAILURES


@dataclass(slots=True)
class Removed:
    """Deliveries and their attempt rows, counted or removed together."""

    deliveries: int = 0
    attempts: int = 0


def _events_past(before: datetime) -> list[Any]:
    before = _utc(before)
    return [
        inbox.c.dispatched_at.is_not(None),
        inbox.c.dispatched_at < before,
        inbox.c.received_at < before,
    ]


def _deliveries_past(before: datetime, statuses: Sequence[str]) -> list[Any]:
    return [
        deliveries.c.status.in_(list(statuses)),
        deliveries.c.finished_at.is_not(None),
        deliveries.c.finished_at < _utc(before),
    ]


class RetentionRepository:
    """Count and delete the events and deliveries past their cut-off."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # --- counting (a dry run) ----------------------------------------------------------------

    def count_events(self, before: datetime) -> int:
        """How many events would go with the cut-off ``before``."""
        query = sa.select(sa.func.count()).select_from(inbox).where(*_events_past(before))
        with self._store.read() as connection:
            return int(connection.scalar(query) or 0)

    def count_deliveries(self, before: datetime, statuses: Sequence[str]) -> Removed:
        """How many deliveries in ``statuses`` (and attempt rows of theirs) would go with the
        cut-off ``before``."""
        where = _deliveries_past(before, statuses)
        chosen = sa.select(deliveries.c.message_id).where(*where)
        with self._store.read() as connection:
            count = connection.scalar(
                sa.select(sa.func.count()).select_from(deliveries).where(*where)
            )
            logged = connection.scalar(
                sa.select(sa.func.count())
                .select_from(attempts)
                .where(attempts.c.message_id.in_(chosen.scalar_subquery()))
            )
        return Removed(int(count or 0), int(logged or 0))

    # --- deleting, one batch per call --------------------------------------------------------

    def prune_events(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` of the oldest events past ``before``, in one short write
        transaction; return how many went (0: none is left)."""
        where = _events_past(before)
        with self._store.read() as connection:
            seqs = list(
                connection.scalars(
                    sa.select(inbox.c.seq).where(*where).order_by(inbox.c.seq).limit(limit)
                )
            )
        if not seqs:
            return 0
        removed = 0
        with self._store.begin() as connection:
            for chunk in chunks(seqs):
                target = self._unlocked(inbox.c.seq, chunk, where)
                removed += connection.execute(inbox.delete().where(target, *where)).rowcount
        return removed

    def prune_deliveries(self, before: datetime, statuses: Sequence[str], limit: int) -> Removed:
        """Delete at most ``limit`` of the oldest deliveries in ``statuses`` past ``before``,
        and their attempts, in one short write transaction; return what went."""
        where = _deliveries_past(before, statuses)
        with self._store.read() as connection:
            ids = list(
                connection.scalars(
                    sa.select(deliveries.c.id).where(*where).order_by(deliveries.c.id).limit(limit)
                )
            )
        if not ids:
            return Removed()
        removed = Removed()
        with self._store.begin() as connection:
            for chunk in chunks(ids):
                target = self._unlocked(deliveries.c.id, chunk, where)
                # The deliveries first, and only the attempts of those that went: a delivery
                # replayed since the read is kept with its whole log.
                gone = list(
                    connection.scalars(
                        deliveries.delete().where(target, *where).returning(deliveries.c.message_id)
                    )
                )
                removed.deliveries += len(gone)
                for message_ids in chunks(gone):
                    removed.attempts += connection.execute(
                        attempts.delete().where(attempts.c.message_id.in_(message_ids))
                    ).rowcount
        return removed

    def _unlocked(self, key: Any, chunk: Sequence[Any], where: list[Any]) -> Any:
        """``key IN chunk``; on PostgreSQL only the rows no other transaction holds now."""
        if self._store.is_sqlite:
            return key.in_(chunk)
        free = (
            sa.select(key)
            .where(key.in_(chunk), *where)
            .order_by(key)
            .with_for_update(skip_locked=True)
        )
        return key.in_(free.scalar_subquery())
