"""Claiming deliveries for sending, renewing the claims and handing them back.

``sending`` is a claim: ``next_attempt_at`` then holds the time the claim lapses, after which
another sender may take the delivery over (the first one crashed), and ``claim_token`` names the
claim, so that a sender whose claim lapsed can no longer renew or release its successor's.
Claims are taken with one ``UPDATE … RETURNING``, so two senders never both get a row. On
PostgreSQL rows are locked in message-id order, as settling locks them: no deadlock between
senders.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from airhook.store.chunks import chunks
from airhook.store.engine import Store
from airhook.store.outbox.pausing import pause_stranded
from airhook.store.outbox.records import Claimed
from airhook.store.tables import deliveries, subscriptions
from airhook.store.times import to_utc as _utc

__all__ = ["claim", "extend", "new_token", "release"]


def new_token() -> str:
    """A fresh claim token."""
    return secrets.token_hex(16)


def _held_by(token: str | None) -> list[Any]:
    """The filter "still held by this claim" (nothing when no token is given)."""
    return [] if token is None else [deliveries.c.claim_token == token]


def claim(
    store: Store,
    *,
    now: datetime,
    lease_seconds: float,
    message_ids: Sequence[str] | None,
    publication: str | None,
    subscription: str | None,
    limit: int,
) -> list[Claimed]:
    """Claim the due deliveries among those selected (:meth:`OutboxRepository.claim`)."""
    now = _utc(now)
    lease_until = now + timedelta(seconds=lease_seconds)
    token = new_token()
    due = sa.and_(
        deliveries.c.status.in_(("pending", "sending")), deliveries.c.next_attempt_at <= now
    )
    # Only active subscriptions' deliveries: a disabled one's wait (paused) until enabled.
    running = sa.select(subscriptions.c.name).where(subscriptions.c.active.is_(True))
    filters: list[Any] = [due, deliveries.c.subscription.in_(running.scalar_subquery())]
    if publication is not None:
        filters.append(deliveries.c.publication == publication)
    if subscription is not None:
        filters.append(deliveries.c.subscription == subscription)
    groups: list[list[Any]] = (
        [[*filters, deliveries.c.message_id.in_(chunk)] for chunk in chunks(message_ids)]
        if message_ids is not None
        else [filters]
    )
    found: list[tuple[int, Claimed]] = []
    with store.begin() as connection:
        for where in groups:
            if len(found) >= limit:
                break
            chosen = (
                sa.select(deliveries.c.id)
                .where(*where)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(limit - len(found))
            )
            picked: Any = chosen.scalar_subquery()
            if not store.is_sqlite:
                # Rows another sender is claiming right now are theirs: skip, do not wait.
                # Chosen once, in a materialised CTE: as a plain subquery PostgreSQL may scan
                # it again for each row it updates, and a LIMIT … SKIP LOCKED scanned again
                # returns other rows each time, so more than ``limit`` were claimed.
                cte = (
                    chosen.with_for_update(skip_locked=True)
                    .cte("chosen")
                    .prefix_with("MATERIALIZED")
                )
                picked = sa.select(cte.c.id).scalar_subquery()
            rows = connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(picked), due)
                .values(
                    status="sending",
                    next_attempt_at=lease_until,
                    claim_token=token,
                    updated_at=now,
                )
                .returning(
                    deliveries.c.id,
                    deliveries.c.message_id,
                    deliveries.c.subscription,
                    deliveries.c.body,
                    deliveries.c.attempts,
                )
            ).all()
            found.extend(
                (row_id, Claimed(mid, name, body, attempts, token))
                for row_id, mid, name, body, attempts in rows
            )
    found.sort(key=lambda pair: pair[0])
    return [claimed for _, claimed in found]


def extend(
    store: Store,
    message_ids: Sequence[str],
    *,
    lease_seconds: float,
    token: str | None,
    now: datetime | None,
) -> None:
    """Extend the claim on deliveries still being sent (:meth:`OutboxRepository.extend`)."""
    now = _utc(now or datetime.now(timezone.utc))
    lease_until = now + timedelta(seconds=lease_seconds)
    with store.begin() as connection:
        for chunk in chunks(message_ids):
            # SKIP LOCKED (PostgreSQL; SQLite has one writer): rows an outcome flush is
            # settling right now need no renewal, and waiting for them while the flush waits
            # for rows locked here, in another order, would deadlock.
            renewable = (
                sa.select(deliveries.c.message_id)
                .where(
                    deliveries.c.message_id.in_(chunk),
                    deliveries.c.status == "sending",
                    *_held_by(token),
                )
                .with_for_update(skip_locked=True)
            )
            connection.execute(
                deliveries.update()
                .where(deliveries.c.message_id.in_(renewable.scalar_subquery()))
                .values(next_attempt_at=lease_until, updated_at=now)
            )


def release(
    store: Store,
    message_ids: Sequence[str],
    *,
    token: str | None,
    now: datetime | None,
) -> None:
    """Hand claimed deliveries back unattempted (:meth:`OutboxRepository.release`)."""
    now = _utc(now or datetime.now(timezone.utc))
    with store.begin() as connection:
        for chunk in chunks(message_ids):
            released = (
                deliveries.update()
                .where(
                    deliveries.c.message_id.in_(chunk),
                    deliveries.c.status == "sending",
                    *_held_by(token),
                )
                .values(status="pending", next_attempt_at=now, updated_at=now)
            )
            if not store.is_sqlite:
                # Lock in message-id order first, as record() does: no deadlock with it.
                released = released.where(
                    deliveries.c.message_id.in_(
                        sa.select(deliveries.c.message_id)
                        .where(deliveries.c.message_id.in_(chunk), *_held_by(token))
                        .order_by(deliveries.c.message_id)
                        .with_for_update()
                        .scalar_subquery()
                    )
                )
            connection.execute(released)
        pause_stranded(connection, now)
