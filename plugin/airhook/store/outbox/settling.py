"""Settling deliveries: each attempt logged, its delivery's status, its subscription's count.

Why failure counting lives here: a delivery's final outcome, its subscription's consecutive
failure count and the disabling at ``disable_after`` must change in one transaction, or two
processes finishing deliveries of one endpoint at once would lose counts.

This is the sender's hot path (once per flush of up to a thousand outcomes), so the delivery
updates and the attempt rows go to the driver (sqlite3, psycopg2) directly: one prepared
statement run for all rows on SQLite, one multi-row statement per :data:`ROWS_PER_STATEMENT`
rows on PostgreSQL, rather than through SQLAlchemy Core's per-row work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airhook.store.chunks import chunks
from airhook.store.driver import ROWS_PER_STATEMENT, Driver
from airhook.store.engine import Store
from airhook.store.outbox.pausing import pause_pending
from airhook.store.outbox.records import FINAL_FAILURES, AttemptRecord, Recorded, Settled
from airhook.store.tables import deliveries, subscriptions
from airhook.store.times import to_utc as _utc

__all__ = ["record"]

#: Settling one delivery by message id, if it is still claimed ("?": the driver's marker).
_SETTLE_ROW = (
    "UPDATE airhook_delivery SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
    " last_status_code = ?, last_error = ?, updated_at = ?, finished_at = ?"
    " WHERE message_id = ? AND status = 'sending'"
)
#: Settling many deliveries in one statement (PostgreSQL): head, the VALUES rows, tail.
_SETTLE_HEAD = (
    "UPDATE airhook_delivery AS d SET status = v.status, attempts = d.attempts + 1,"
    " next_attempt_at = v.next_attempt_at, last_status_code = v.last_status_code,"
    " last_error = v.last_error, updated_at = v.updated_at, finished_at = v.finished_at"
    " FROM (VALUES "
)
_SETTLE_TAIL = (
    ") AS v(status, next_attempt_at, last_status_code, last_error, updated_at, finished_at,"
    " message_id) WHERE d.message_id = v.message_id AND d.status = 'sending'"
)


def record(
    store: Store,
    driver: Driver,
    settled: Sequence[Settled],
    *,
    disable_after: int,
    now: datetime | None,
) -> Recorded:
    """Record attempts and settle their deliveries in one transaction
    (:meth:`OutboxRepository.record`)."""
    report = Recorded()
    if not settled:
        return report
    now = _utc(now or datetime.now(timezone.utc))
    names = sorted({s.attempt.subscription for s in settled})
    with store.begin() as connection:
        query = sa.select(
            subscriptions.c.name,
            subscriptions.c.active,
            subscriptions.c.consecutive_failures,
        ).where(subscriptions.c.name.in_(names))
        if not store.is_sqlite:
            # Serialise counting per subscription across processes (SQLite: BEGIN IMMEDIATE).
            query = query.with_for_update()
        state = {
            name: [bool(active), int(count)] for name, active, count in connection.execute(query)
        }
        before = {name: list(values) for name, values in state.items()}
        held = _still_held(store, connection, settled)
        # Per delivery: message id, status, next attempt, status code, error, finished.
        updates: list[tuple[str, str, datetime | None, int | None, str | None, bool]] = []
        for item in settled:
            attempt = item.attempt
            if attempt.message_id not in held:
                # Its claim lapsed and another sender holds it now: the attempt is logged
                # (it was made), but settles nothing and counts towards nothing.
                report.stale.append(attempt.message_id)
                continue
            status: str = item.status
            next_at = _utc(item.next_attempt_at) if item.next_attempt_at else None
            current = state.get(attempt.subscription)
            if current is not None:
                active = current[0]
                if status == "delivered":
                    current[1] = 0
                elif status in FINAL_FAILURES:
                    current[1] += 1
                    reason = item.disable
                    if reason is None and current[1] >= disable_after:
                        reason = f"{current[1]} consecutive failed deliveries"
                    if reason is not None and active:
                        current[0] = False
                        report.disabled[attempt.subscription] = reason
                elif status == "pending" and not active:
                    status, next_at = "paused", None
                    report.paused.append(attempt.message_id)
            updates.append(
                (
                    attempt.message_id,
                    status,
                    next_at,
                    attempt.status_code,
                    (attempt.error or "")[:500] or None,
                    status == "delivered" or status in FINAL_FAILURES,
                )
            )
        logged = [s.attempt for s in settled if s.attempt.subscription in state]  # not deleted
        _write_outcomes(connection, driver, updates, logged, now)
        for name, (active, count) in state.items():
            if [active, count] == before[name]:
                continue
            values: dict[str, Any] = {"consecutive_failures": count, "updated_at": now}
            if name in report.disabled:
                values.update(
                    active=False, disabled_reason=report.disabled[name][:500], disabled_at=now
                )
            connection.execute(
                subscriptions.update().where(subscriptions.c.name == name).values(**values)
            )
        pause_pending(connection, sorted(report.disabled), now)
    return report


def _still_held(store: Store, connection: Connection, settled: Sequence[Settled]) -> set[str]:
    """The settled deliveries still ``sending`` under the claim they were attempted under;
    locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    tokens: dict[str, str | None] = {}
    ids = sorted({item.attempt.message_id for item in settled})
    claims = {item.token for item in settled}
    for chunk in chunks(ids):
        query = sa.select(deliveries.c.message_id, deliveries.c.claim_token).where(
            deliveries.c.message_id.in_(chunk), deliveries.c.status == "sending"
        )
        if None not in claims:
            # Only this round's rows are locked (not one another sender holds now), in
            # message-id order, as every sender locks them: no deadlock between senders.
            query = query.where(deliveries.c.claim_token.in_(sorted(claims)))
        if not store.is_sqlite:
            query = query.order_by(deliveries.c.message_id).with_for_update()
        tokens.update((mid, token) for mid, token in connection.execute(query))
    return {
        item.attempt.message_id
        for item in settled
        if item.attempt.message_id in tokens
        and (item.token is None or tokens[item.attempt.message_id] == item.token)
    }


def _write_outcomes(
    connection: Connection,
    driver: Driver,
    updates: Sequence[tuple[str, str, datetime | None, int | None, str | None, bool]],
    logged: Sequence[AttemptRecord],
    now: datetime,
) -> None:
    """Write the deliveries' updates and the attempt rows, straight to the driver."""
    at = driver.time(now)
    to_db = driver.time
    m = driver.marker
    cursor = connection.connection.cursor()
    try:
        rows = [
            (
                status,
                to_db(next_at) if next_at is not None else None,
                code,
                error,
                at,
                at if final else None,
                mid,
            )
            for mid, status, next_at, code, error, final in updates
        ]
        unique = len({row[-1] for row in rows}) == len(rows)
        if driver.sqlite or not unique:
            # SQLite runs one prepared statement for every row, in C: nothing is cheaper.
            # (On PostgreSQL only when a message id repeats, which the engine never does:
            # a multi-row UPDATE would count two attempts of one delivery as one.)
            cursor.executemany(_SETTLE_ROW.replace("?", m), rows)
        else:
            # PostgreSQL drivers run executemany as one round trip per row: one UPDATE … FROM
            # (VALUES …) per 500 rows instead, typed so that all-NULL columns still bind.
            ts = f"CAST({m} AS TIMESTAMP WITH TIME ZONE)"
            row_sql = f"({m}, {ts}, CAST({m} AS INTEGER), {m}, {ts}, {ts}, {m})"
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                batch = rows[start : start + ROWS_PER_STATEMENT]
                cursor.execute(
                    _SETTLE_HEAD + ", ".join([row_sql] * len(batch)) + _SETTLE_TAIL,
                    [value for row in batch for value in row],
                )
        if not logged:
            return
        logged_rows = [
            (
                a.message_id,
                a.subscription,
                to_db(a.attempted_at),
                a.status_code,
                a.outcome,
                a.latency_ms,
                (a.error or "")[:500] or None,
                (a.response_excerpt or "")[:512] or None,
            )
            for a in logged
        ]
        head = (
            "INSERT INTO airhook_delivery_attempt (message_id, subscription, attempted_at,"
            " status_code, outcome, latency_ms, error, response_excerpt) VALUES "
        )
        row_sql = f"({', '.join([m] * 8)})"
        if driver.sqlite:
            cursor.executemany(head + row_sql, logged_rows)
        else:
            for start in range(0, len(logged_rows), ROWS_PER_STATEMENT):
                logged_batch = logged_rows[start : start + ROWS_PER_STATEMENT]
                cursor.execute(
                    head + ", ".join([row_sql] * len(logged_batch)),
                    [value for row in logged_batch for value in row],
                )
    finally:
        cursor.close()
