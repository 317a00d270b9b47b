"""Replaying deliveries: a fresh round of attempts for one delivery or a subscription's.

A replay resets the attempt count and makes the deliveries due now, whatever they ended as; a
delivery being sent right now is left to its sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa

from airhook.core.errors import ConflictError
from airhook.store.chunks import chunks
from airhook.store.engine import Store
from airhook.store.outbox.queries import filters
from airhook.store.outbox.records import DeliveryNotFoundError
from airhook.store.tables import deliveries, subscriptions
from airhook.store.times import to_utc as _utc

__all__ = ["replay"]


def replay(
    store: Store,
    *,
    message_id: str | None,
    subscription: str | None,
    since: datetime | None,
    until: datetime | None,
    statuses: Sequence[str],
    now: datetime | None,
) -> list[str]:
    """Reset deliveries for a fresh round of attempts (:meth:`OutboxRepository.replay`)."""
    if (message_id is None) == (subscription is None):
        raise ValueError("replay one delivery (message_id) or a subscription's, not both")
    now = _utc(now or datetime.now(timezone.utc))
    if message_id is not None:
        where = [deliveries.c.message_id == message_id, deliveries.c.status != "sending"]
    else:
        where = filters(subscription, statuses, None, since, until)
    with store.begin() as connection:
        rows = connection.execute(
            sa.select(deliveries.c.message_id, deliveries.c.subscription).where(*where)
        ).all()
        if message_id is not None and not rows:
            exists = connection.scalar(
                sa.select(deliveries.c.status).where(deliveries.c.message_id == message_id)
            )
            if exists is None:
                raise DeliveryNotFoundError(message_id)
            raise ConflictError("delivery", message_id, "it is being sent right now")
        names = sorted({name for _, name in rows})
        active = {
            name: bool(flag)
            for name, flag in connection.execute(
                sa.select(subscriptions.c.name, subscriptions.c.active).where(
                    subscriptions.c.name.in_(names)
                )
            )
        }
        ids = [mid for mid, _ in rows]
        for name in names:
            mine = [mid for mid, owner in rows if owner == name]
            running = active.get(name, False)
            for chunk in chunks(mine):
                connection.execute(
                    deliveries.update()
                    .where(deliveries.c.message_id.in_(chunk), deliveries.c.status != "sending")
                    .values(
                        status="pending" if running else "paused",
                        attempts=0,
                        next_attempt_at=now if running else None,
                        finished_at=None,
                        updated_at=now,
                    )
                )
    return ids
