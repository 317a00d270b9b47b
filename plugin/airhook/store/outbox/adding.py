"""Adding deliveries: the outbox insert of every publish, claimed in its own transaction.

The hot path of every publish, so the rows go straight to the driver (sqlite3, psycopg2) as one
multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per :data:`ROWS_PER_STATEMENT` rows, as
the inbox's do, with times bound as SQLAlchemy Core binds them (:mod:`airhook.store.driver`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from airhook.store.chunks import chunks
from airhook.store.driver import ROWS_PER_STATEMENT, Driver
from airhook.store.engine import Store
from airhook.store.outbox.claims import new_token
from airhook.store.outbox.pausing import pause_stranded
from airhook.store.outbox.records import Added, Claimed, NewDelivery
from airhook.store.tables import subscriptions
from airhook.store.times import to_utc as _utc

__all__ = ["add_deliveries"]


def add_deliveries(
    store: Store,
    driver: Driver,
    new: Sequence[NewDelivery],
    *,
    now: datetime | None,
    lease_seconds: float | None,
) -> Added:
    """Add the deliveries not added before; with ``lease_seconds``, claim the new ones whose
    subscription is active (:meth:`~airhook.store.outbox.OutboxRepository.add_claimed`)."""
    if not new:
        return Added([], [])
    now = _utc(now or datetime.now(timezone.utc))
    unique: dict[str, NewDelivery] = {}
    for d in new:
        unique.setdefault(d.message_id, d)  # the first of duplicates wins; order is kept
    lease_until = now + timedelta(seconds=lease_seconds) if lease_seconds is not None else None
    token = new_token() if lease_until is not None else None
    created: set[str] = set()
    with store.begin() as connection:
        active: dict[str, bool] = {}
        if lease_until is not None:
            # Read in this transaction: a subscription disabled since the events were matched
            # gets paused rows, not claimed ones. (A disable committing after this read is
            # caught by the sender, which skips and releases; releasing pauses them.)
            names = sorted({d.subscription for d in unique.values()})
            for chunk in chunks(names):
                active.update(
                    (name, bool(flag))
                    for name, flag in connection.execute(
                        sa.select(subscriptions.c.name, subscriptions.c.active).where(
                            subscriptions.c.name.in_(chunk)
                        )
                    )
                )
        # (status, next_attempt_at) per delivery: claimed, due now, or paused.
        rows: list[tuple[NewDelivery, str, datetime | None]] = []
        for d in unique.values():
            if d.status == "paused":
                rows.append((d, "paused", None))
            elif lease_until is None or d.subscription not in active:
                rows.append((d, "pending", now))
            elif active[d.subscription]:
                rows.append((d, "sending", lease_until))
            else:
                rows.append((d, "paused", None))
        # One multi-row INSERT per ROWS_PER_STATEMENT rows, times bound as Core binds them.
        at = driver.time(now)
        times = {None: None, now: at}
        if lease_until is not None:
            times[lease_until] = driver.time(lease_until)
        head = (
            "INSERT INTO airhook_delivery (message_id, subscription, event, platform,"
            " publication, body, status, attempts, next_attempt_at, claim_token,"
            " created_at, updated_at) VALUES "
        )
        row_sql = f"({', '.join([driver.marker] * 7)}, 0, {', '.join([driver.marker] * 4)})"
        tail = " ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                batch = rows[start : start + ROWS_PER_STATEMENT]
                params: list[Any] = []
                for d, status, next_at in batch:
                    params += (
                        d.message_id,
                        d.subscription,
                        d.event,
                        d.platform,
                        d.publication,
                        d.body,
                        status,
                        times[next_at],
                        token if status == "sending" else None,
                        at,
                        at,
                    )
                cursor.execute(head + ", ".join([row_sql] * len(batch)) + tail, params)
                created.update(row[0] for row in cursor.fetchall())
        finally:
            cursor.close()
        pause_stranded(connection, now)
    claimed = [
        Claimed(d.message_id, d.subscription, d.body, 0, token)
        for d, status, _ in rows
        if status == "sending" and d.message_id in created
    ]
    return Added([d.message_id for d in new if d.message_id in created], claimed)
