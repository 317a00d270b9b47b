"""Reading the outbox: one delivery, a selection of them, a delivery's attempts, the counts.

Reads go through the store's read engine (on SQLite, a connection that does not take the write
lock) and never change a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from airhook.store.chunks import chunks
from airhook.store.engine import Store
from airhook.store.outbox.records import (
    STATUSES,
    AttemptRecord,
    Delivery,
    DeliveryNotFoundError,
)
from airhook.store.tables import attempts, deliveries, subscriptions
from airhook.store.times import aware as _aware
from airhook.store.times import to_utc as _utc

__all__ = [
    "attempts_of",
    "counts",
    "filters",
    "find",
    "get",
    "oldest_due",
    "page",
    "settled_per_bucket",
]


def get(store: Store, message_id: str) -> Delivery:
    """Return one delivery."""
    with store.read() as connection:
        row = connection.execute(
            sa.select(deliveries).where(deliveries.c.message_id == message_id)
        ).first()
    if row is None:
        raise DeliveryNotFoundError(message_id)
    return _delivery(row)


def find(
    store: Store,
    *,
    subscription: str | None,
    statuses: Sequence[str] | None,
    publication: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> list[Delivery]:
    """Return deliveries, oldest first, selected by subscription, status, publication and
    creation time (``since`` inclusive, ``until`` exclusive)."""
    query = sa.select(deliveries).order_by(deliveries.c.created_at, deliveries.c.id)
    query = query.where(*filters(subscription, statuses, publication, since, until))
    if limit is not None:
        query = query.limit(limit)
    with store.read() as connection:
        return [_delivery(row) for row in connection.execute(query)]


def page(
    store: Store,
    *,
    subscription: str | None,
    statuses: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[Delivery], int]:
    """Return a page of deliveries, newest first, and how many match in all.

    Newest first is by ``id``, the insertion order (``created_at`` is the time of the insert,
    so the two agree), which the primary key answers without a sort: a page of the latest
    deliveries reads ``limit`` rows however many there are.
    """
    where = filters(subscription, statuses, None, since, until)
    query = (
        sa.select(deliveries)
        .where(*where)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = sa.select(sa.func.count()).select_from(deliveries).where(*where)
    with store.read() as connection:
        rows = connection.execute(query).all()
        count = int(connection.scalar(total) or 0)
    return [_delivery(row) for row in rows], count


def settled_per_bucket(
    store: Store, since: datetime, bucket_seconds: int
) -> dict[datetime, dict[str, int]]:
    """Deliveries that ended since ``since``, per ``bucket_seconds`` of their end and per final
    status (``delivered``, ``failed``, ``dead``); bucket starts aligned to the Unix epoch, UTC.
    """
    finished = deliveries.c.finished_at
    if store.is_sqlite:
        epoch = sa.cast(sa.func.strftime("%s", finished), sa.Integer)
        bucket = sa.cast(epoch / bucket_seconds, sa.Integer).label("bucket")
    else:
        epoch = sa.cast(sa.func.extract("epoch", finished), sa.BigInteger)
        bucket = sa.func.floor(epoch / bucket_seconds).label("bucket")
    query = (
        sa.select(bucket, deliveries.c.status, sa.func.count())
        .where(finished >= _utc(since), deliveries.c.status.in_(("delivered", "failed", "dead")))
        .group_by(bucket, deliveries.c.status)
    )
    found: dict[datetime, dict[str, int]] = {}
    with store.read() as connection:
        for start, status, count in connection.execute(query):
            moment = datetime.fromtimestamp(int(start) * bucket_seconds, timezone.utc)
            found.setdefault(moment, {})[status] = int(count)
    return found


def attempts_of(store: Store, message_id: str) -> list[AttemptRecord]:
    """Return a delivery's attempts, oldest first."""
    with store.read() as connection:
        rows = connection.execute(
            sa.select(attempts)
            .where(attempts.c.message_id == message_id)
            .order_by(attempts.c.attempted_at, attempts.c.id)
        ).all()
    return [
        AttemptRecord(
            message_id=row.message_id,
            subscription=row.subscription,
            attempted_at=_aware(row.attempted_at),  # type: ignore[arg-type]
            outcome=row.outcome,
            status_code=row.status_code,
            latency_ms=row.latency_ms,
            error=row.error,
            response_excerpt=row.response_excerpt,
        )
        for row in rows
    ]


def counts(
    store: Store,
    *,
    publication: str | None,
    subscription: str | None,
    message_ids: Sequence[str] | None,
) -> tuple[dict[str, int], datetime | None]:
    """Return the number of deliveries per status, and the earliest pending next attempt."""
    counts = dict.fromkeys(STATUSES, 0)
    earliest: datetime | None = None
    base = filters(subscription, None, publication, None, None)
    groups = (
        [[*base, deliveries.c.message_id.in_(chunk)] for chunk in chunks(message_ids)]
        if message_ids is not None
        else [base]
    )
    with store.read() as connection:
        for where in groups:
            for status, count in connection.execute(
                sa.select(deliveries.c.status, sa.func.count())
                .where(*where)
                .group_by(deliveries.c.status)
            ):
                counts[status] += int(count)
            first = _aware(
                connection.scalar(
                    sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                        *where, deliveries.c.status.in_(("pending", "sending"))
                    )
                )
            )
            if first is not None and (earliest is None or first < earliest):
                earliest = first
    return counts, earliest


def oldest_due(store: Store, now: datetime) -> datetime | None:
    """When the longest-waiting due delivery fell due (what a sender would claim first): a
    ``pending`` one's next attempt or a ``sending`` one's lapsed claim, of an active
    subscription; ``None`` when nothing is due."""
    now = _utc(now)
    running = sa.select(subscriptions.c.name).where(subscriptions.c.active.is_(True))
    with store.read() as connection:
        return _aware(
            connection.scalar(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.status.in_(("pending", "sending")),
                    deliveries.c.next_attempt_at <= now,
                    deliveries.c.subscription.in_(running.scalar_subquery()),
                )
            )
        )


def filters(
    subscription: str | None,
    statuses: Sequence[str] | None,
    publication: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    """The conditions selecting deliveries by subscription, status, publication and creation
    time (``since`` inclusive, ``until`` exclusive); none for what is ``None``."""
    where: list[Any] = []
    if subscription is not None:
        where.append(deliveries.c.subscription == subscription)
    if statuses is not None:
        where.append(deliveries.c.status.in_(list(statuses)))
    if publication is not None:
        where.append(deliveries.c.publication == publication)
    if since is not None:
        where.append(deliveries.c.created_at >= _utc(since))
    if until is not None:
        where.append(deliveries.c.created_at < _utc(until))
    return where


def _delivery(row: Any) -> Delivery:
    """A delivery row as read, its times made aware."""
    return Delivery(
        id=row.id,
        message_id=row.message_id,
        subscription=row.subscription,
        event=row.event,
        platform=row.platform,
        publication=row.publication,
        body=row.body,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=_aware(row.next_attempt_at),
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
        finished_at=_aware(row.finished_at),
    )
