"""A subscription's state carried over to its deliveries: paused while it is disabled.

Called inside the transaction that changes the subscription (:mod:`airhook.store.subscriptions`)
or that adds, releases or settles deliveries, so that no pending delivery is left waiting for a
subscription that will not send it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airhook.store.tables import deliveries, subscriptions
from airhook.store.times import to_utc as _utc

__all__ = ["pause_pending", "pause_stranded", "resume_paused"]


def pause_pending(connection: Connection, names: Sequence[str], now: datetime) -> None:
    """Pause the pending deliveries of these (now disabled) subscriptions."""
    if names:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.subscription.in_(names), deliveries.c.status == "pending")
            .values(status="paused", next_attempt_at=None, updated_at=_utc(now))
        )


def pause_stranded(connection: Connection, now: datetime) -> None:
    """Pause pending deliveries whose subscription is not active.

    They arise when a subscription is disabled between matching an event and adding its
    delivery, or while a batch holds claims: left pending they would never be claimed (only an
    active subscription's are) and whoever waits for them would wait for ever.
    """
    inactive = sa.select(subscriptions.c.name).where(subscriptions.c.active.is_(False))
    connection.execute(
        deliveries.update()
        .where(
            deliveries.c.status == "pending",
            deliveries.c.subscription.in_(inactive.scalar_subquery()),
        )
        .values(status="paused", next_attempt_at=None, updated_at=_utc(now))
    )


def resume_paused(connection: Connection, name: str, now: datetime) -> None:
    """Make the paused deliveries of a (re-enabled) subscription due now, for a fresh round."""
    connection.execute(
        deliveries.update()
        .where(deliveries.c.subscription == name, deliveries.c.status == "paused")
        .values(status="pending", attempts=0, next_attempt_at=_utc(now), updated_at=_utc(now))
    )
