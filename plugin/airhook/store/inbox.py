"""The inbox: every accepted delivery, recorded exactly once, then dispatched to Airflow.

Each operation has one SQL path. Recording, the receiver's hot path, writes its insert for the
driver (sqlite3, psycopg2; see :mod:`airhook.store.driver`); the rest go through SQLAlchemy Core.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from airhook.store.chunks import chunks
from airhook.store.driver import ROWS_PER_STATEMENT, require_driver
from airhook.store.engine import Store
from airhook.store.tables import inbox
from airhook.store.times import aware as _aware
from airhook.store.times import to_utc as _utc

__all__ = ["NEW_EVENTS_CHANNEL", "InboxEvent", "InboxRepository", "NewEvent", "Recorded"]

#: The PostgreSQL advisory lock that makes inbox writers commit one after another ("AIRHINBX").
_RECORD_LOCK_ID = 0x41495248494E4258
#: The PostgreSQL channel notified when recorded events commit (the dispatcher listens to it).
NEW_EVENTS_CHANNEL = "airhook_inbox"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A verified, validated delivery about to be recorded."""

    id: str
    source: str
    profile: str
    event: str
    kind: str | None
    dedupe_key: str
    body: str
    received_at: datetime
    #: JSON object of the headers worth keeping (:func:`airhook.core.received_headers.kept_headers`)
    headers: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording a delivery did.

    ``created``: new, recorded under ``id``. ``duplicate``: the same delivery (same dedupe key:
    platform id, else body) was recorded before under ``id``, whether it was re-signed or is the
    very same signed request again: either way it is harmless, since nothing runs twice (the
    signed timestamp's tolerance is what bounds a replay, checked before this).
    """

    status: Literal["created", "duplicate"]
    id: str


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A recorded event, as read back."""

    seq: int
    id: str
    source: str
    profile: str
    event: str
    kind: str | None
    body: str
    received_at: datetime
    dispatch_attempts: int
    dispatched_at: datetime | None
    #: times it was sent to its assets again on request (:meth:`InboxRepository.redispatch`)
    redispatches: int = 0
    #: JSON object of the headers it came with, without secrets (``None``: not kept)
    headers: str | None = None

    def payload(self) -> Any:
        """Return the parsed body."""
        return orjson.loads(self.body)

    def as_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (what sensors return and XCom stores)."""
        return {
            "id": self.id,
            "source": self.source,
            "profile": self.profile,
            "event": self.event,
            "kind": self.kind,
            "received_at": self.received_at.isoformat(),
            "payload": self.payload(),
        }


def _event(row: Any) -> InboxEvent:
    return InboxEvent(
        seq=row.seq,
        id=row.id,
        source=row.source,
        profile=row.profile,
        event=row.event,
        kind=row.kind,
        body=row.body,
        received_at=_aware(row.received_at),  # type: ignore[arg-type]
        dispatch_attempts=row.dispatch_attempts,
        dispatched_at=_aware(row.dispatched_at),
        redispatches=row.redispatches,
        headers=row.headers,
    )


_COLUMNS = [
    inbox.c.seq,
    inbox.c.id,
    inbox.c.source,
    inbox.c.profile,
    inbox.c.event,
    inbox.c.kind,
    inbox.c.body,
    inbox.c.received_at,
    inbox.c.dispatch_attempts,
    inbox.c.dispatched_at,
    inbox.c.redispatches,
    inbox.c.headers,
]


class InboxRepository:
    """Record, read and mark inbox events.

    Recording is the receiver's hot path: its insert is written for the driver (sqlite3,
    psycopg2; see :mod:`airhook.store.driver`), with no SQLAlchemy Core twin, so a store whose
    driver has another parameter style is refused here, with a
    :class:`~airhook.core.errors.SetupError` naming ``[airhook] database_url``.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._driver = require_driver(store, "the inbox")

    def record(self, events: Sequence[NewEvent]) -> list[Recorded]:
        """Record a batch in one transaction; return one outcome per event, in order.

        Duplicates are settled by the unique (source, dedupe_key) constraint, so two processes
        recording the same delivery at once still record it once.

        Events become visible in ``seq`` order, so a reader paging with ``after_seq`` (the sensor's
        trigger) never skips one. SQLite has one writer at a time anyway; on PostgreSQL a
        sequence value is drawn at insert time, and a transaction that drew a lower one could
        commit after one that drew a higher one: an advisory lock held until commit makes the
        writers take turns, as SQLite's writers do (each turn is a whole group-committed batch).

        This is the receiver's hot path (its group-commit writer calls it once per batch), so the
        insert skips SQLAlchemy Core's per-execution work (compiling, "insertmanyvalues"
        batching, result processing: most of a small batch's CPU): the rows go to the driver as
        one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` per
        :data:`~airhook.store.driver.ROWS_PER_STATEMENT` rows, with ``received_at``
        converted by the column type's own bind processor so that it is stored exactly as Core
        stores it. A second statement runs only when some rows conflicted (duplicates), to read
        the earlier rows' ids.
        """
        if not events:
            return []
        first_of: dict[tuple[str, str], NewEvent] = {}
        for event in events:
            first_of.setdefault((event.source, event.dedupe_key), event)
        unique = list(first_of.values())
        driver = self._driver
        created: set[str] = set()
        with self._store.begin() as connection:
            if not self._store.is_sqlite:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_RECORD_LOCK_ID)))
            head = (
                "INSERT INTO airhook_inbox (id, source, profile, event, kind, dedupe_key,"
                " body, received_at, headers, dispatch_attempts) VALUES "
            )
            values = f"({', '.join([driver.marker] * 9)}, 0)"
            tail = " ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id"
            cursor = connection.connection.cursor()
            try:
                for chunk_start in range(0, len(unique), ROWS_PER_STATEMENT):
                    batch = unique[chunk_start : chunk_start + ROWS_PER_STATEMENT]
                    params: list[Any] = []
                    for e in batch:
                        params += (
                            e.id,
                            e.source,
                            e.profile,
                            e.event,
                            e.kind,
                            e.dedupe_key,
                            e.body,
                            driver.time(e.received_at),
                            e.headers,
                        )
                    cursor.execute(head + ", ".join([values] * len(batch)) + tail, params)
                    created.update(row[0] for row in cursor.fetchall())
            finally:
                cursor.close()
            if created and not self._store.is_sqlite:
                # Delivered to listeners at the commit (not before, not if rolled back): the
                # dispatcher of any process wakes at once instead of at its next poll.
                connection.exec_driver_sql(f"NOTIFY {NEW_EVENTS_CHANNEL}")
            earlier: dict[tuple[str, str], str] = {}
            missing = [key for key, e in first_of.items() if e.id not in created]
            for chunk_start in range(0, len(missing), 200):
                chunk = missing[chunk_start : chunk_start + 200]
                found = connection.execute(
                    sa.select(inbox.c.source, inbox.c.dedupe_key, inbox.c.id).where(
                        sa.tuple_(inbox.c.source, inbox.c.dedupe_key).in_(chunk)
                    )
                )
                for source, key, event_id in found:
                    earlier[(source, key)] = event_id
        outcomes = []
        for event in events:
            key = (event.source, event.dedupe_key)
            first = first_of[key]
            if first is event and event.id in created:
                outcomes.append(Recorded("created", event.id))
            else:  # earlier in this batch, or in an earlier one
                outcomes.append(
                    Recorded("duplicate", first.id if first.id in created else earlier[key])
                )
        return outcomes

    def get(self, event_id: str) -> InboxEvent | None:
        """Return one event by id."""
        with self._store.read() as connection:
            row = connection.execute(sa.select(*_COLUMNS).where(inbox.c.id == event_id)).first()
        return _event(row) if row else None

    def undispatched(self, limit: int) -> list[InboxEvent]:
        """Return the oldest events not yet dispatched."""
        with self._store.read() as connection:
            rows = connection.execute(
                sa.select(*_COLUMNS)
                .where(inbox.c.dispatched_at.is_(None))
                .order_by(inbox.c.seq)
                .limit(limit)
            ).all()
        return [_event(row) for row in rows]

    def backlog(self, limit: int) -> int:
        """Count undispatched events, stopping at ``limit``: the receiver's backpressure asks
        every second, and only whether a bound is passed, so the count reads at most ``limit``
        index entries however large the backlog."""
        undispatched = (
            sa.select(inbox.c.id).where(inbox.c.dispatched_at.is_(None)).limit(limit).subquery()
        )
        with self._store.read() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(undispatched)) or 0)

    def begin_dispatch(self, event_ids: Sequence[str]) -> None:
        """Count a dispatch attempt for each event, before anything is written to Airflow.

        An event whose count is above zero when it is picked up again may already have reached
        Airflow (a crash between Airflow's commit and :meth:`mark_dispatched`): the dispatcher
        checks Airflow for it before dispatching it again.
        """
        with self._store.begin() as connection:
            connection.execute(
                inbox.update()
                .where(inbox.c.id.in_(event_ids))
                .values(dispatch_attempts=inbox.c.dispatch_attempts + 1)
            )

    def dispatch_states(self, event_ids: Sequence[str]) -> dict[str, tuple[bool, int]]:
        """Return, per event id: whether it is marked dispatched, and its dispatch attempts."""
        states: dict[str, tuple[bool, int]] = {}
        with self._store.read() as connection:
            for chunk in chunks(event_ids):
                rows = connection.execute(
                    sa.select(inbox.c.id, inbox.c.dispatched_at, inbox.c.dispatch_attempts).where(
                        inbox.c.id.in_(chunk)
                    )
                )
                for event_id, dispatched_at, attempts in rows:
                    states[event_id] = (dispatched_at is not None, int(attempts))
        return states

    def mark_dispatched(self, event_ids: Sequence[str], at: datetime) -> None:
        """Record that these events reached Airflow."""
        with self._store.begin() as connection:
            connection.execute(
                inbox.update()
                .where(inbox.c.id.in_(event_ids), inbox.c.dispatched_at.is_(None))
                .values(dispatched_at=_utc(at))
            )

    def find(
        self,
        source: str,
        *,
        after_seq: int = 0,
        received_after: datetime | None = None,
        limit: int = 200,
    ) -> list[InboxEvent]:
        """Return a source's events in order, after a sequence number and a time."""
        query = sa.select(*_COLUMNS).where(inbox.c.source == source, inbox.c.seq > after_seq)
        if received_after is not None:
            query = query.where(inbox.c.received_at >= _utc(received_after))
        with self._store.read() as connection:
            rows = connection.execute(query.order_by(inbox.c.seq).limit(limit)).all()
        return [_event(row) for row in rows]

    def count(self, source: str | None = None, *, dispatched: bool | None = None) -> int:
        """Count events, of one source and/or by dispatch state."""
        query = sa.select(sa.func.count()).select_from(inbox)
        if source is not None:
            query = query.where(inbox.c.source == source)
        if dispatched is not None:
            column = inbox.c.dispatched_at
            query = query.where(column.is_not(None) if dispatched else column.is_(None))
        with self._store.read() as connection:
            return int(connection.scalar(query) or 0)

    def list(
        self,
        *,
        source: str | None = None,
        event_pattern: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        dispatched: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[builtins.list[InboxEvent], int]:
        """A page of events, newest first, and how many match in all.

        :param event_pattern: an event name, ``*`` matching any run of characters.
        :param since: received at or after (inclusive); ``until``: before (exclusive).
        :param dispatched: only events sent to their assets (``True``) or still waiting.
        """
        conditions: list[Any] = []
        if source is not None:
            conditions.append(inbox.c.source == source)
        if event_pattern is not None and event_pattern != "*":
            if "*" in event_pattern:
                # LIKE with "!" as the escape: the pattern's own "%", "_" and "!" are literal.
                escaped = event_pattern.replace("!", "!!").replace("%", "!%").replace("_", "!_")
                conditions.append(inbox.c.event.like(escaped.replace("*", "%"), escape="!"))
            else:
                conditions.append(inbox.c.event == event_pattern)
        if kind is not None:
            conditions.append(inbox.c.kind == kind)
        if since is not None:
            conditions.append(inbox.c.received_at >= _utc(since))
        if until is not None:
            conditions.append(inbox.c.received_at < _utc(until))
        if dispatched is not None:
            column = inbox.c.dispatched_at
            conditions.append(column.is_not(None) if dispatched else column.is_(None))
        page = (
            sa.select(*_COLUMNS)
            .where(*conditions)
            .order_by(inbox.c.seq.desc())
            .limit(limit)
            .offset(offset)
        )
        total = sa.select(sa.func.count()).select_from(inbox).where(*conditions)
        with self._store.read() as connection:
            rows = connection.execute(page).all()
            count = int(connection.scalar(total) or 0)
        return [_event(row) for row in rows], count

    def redispatch(self, event_ids: Sequence[str]) -> int:
        """Send these events to their assets again; return how many will go.

        Each becomes undispatched with its re-dispatch count raised, so the dispatcher sends it
        once more through its usual exactly-once path, as a new asset event (its ``extra`` says
        which re-dispatch it is, so Airflow's asset events of an earlier dispatch do not count as
        this one's). An event not dispatched yet is left alone: it is about to go anyway.
        """
        changed = 0
        with self._store.begin() as connection:
            for chunk in chunks(list(dict.fromkeys(event_ids))):
                result = connection.execute(
                    inbox.update()
                    .where(inbox.c.id.in_(chunk), inbox.c.dispatched_at.is_not(None))
                    .values(
                        dispatched_at=None,
                        dispatch_attempts=0,
                        redispatches=inbox.c.redispatches + 1,
                    )
                )
                changed += result.rowcount
            if changed and not self._store.is_sqlite:
                connection.exec_driver_sql(f"NOTIFY {NEW_EVENTS_CHANNEL}")
        return changed

    def received_per_bucket(self, since: datetime, bucket_seconds: int) -> dict[datetime, int]:
        """Events received since ``since``, counted per ``bucket_seconds`` (keys: bucket starts,
        aligned to the Unix epoch, in UTC)."""
        if self._store.is_sqlite:
            epoch = sa.cast(sa.func.strftime("%s", inbox.c.received_at), sa.Integer)
        else:
            epoch = sa.cast(sa.func.extract("epoch", inbox.c.received_at), sa.BigInteger)
        if self._store.is_sqlite:
            bucket = sa.cast(epoch / bucket_seconds, sa.Integer).label("bucket")
        else:
            bucket = sa.func.floor(epoch / bucket_seconds).label("bucket")
        query = (
            sa.select(bucket, sa.func.count())
            .where(inbox.c.received_at >= _utc(since))
            .group_by(bucket)
        )
        with self._store.read() as connection:
            rows = connection.execute(query).all()
        return {
            datetime.fromtimestamp(int(start) * bucket_seconds, timezone.utc): int(count)
            for start, count in rows
        }
