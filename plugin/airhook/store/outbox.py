"""The outbox: one delivery per (subscription, event), every attempt, and the failure counts.

A delivery's life::

    pending ──claim──▶ sending ──▶ delivered
       ▲                  │  ├───▶ failed     (4xx, 410, destination refused: no retry)
       │   retry later    │  └───▶ dead       (the last attempt failed: dead letter)
       └──────────────────┘
    paused: its subscription is disabled; enabling it (or a replay) makes it pending again

``message_id`` (the ``webhook-id``) is unique, so adding the same delivery twice (a task retry
publishing the same events) adds it once. ``sending`` is a claim: ``next_attempt_at`` then holds
the time the claim lapses, after which another sender may take the delivery over (the first one
crashed). Claims are taken with one ``UPDATE … RETURNING``, so two senders never both get a row.
A publishing sender adds its new deliveries already claimed (:meth:`OutboxRepository.add_claimed`,
``sending`` in the insert's own transaction) and sends them from memory: the row is durable
before the request leaves, and a crash leaves a claim that lapses like any other.

Why failure counting lives here: a delivery's final outcome, its subscription's consecutive
failure count and the disabling at ``disable_after`` must change in one transaction, or two
processes finishing deliveries of one endpoint at once would lose counts.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airhook.core.errors import ConflictError, DeliveryNotFoundError
from airhook.store.chunks import chunks
from airhook.store.driver import Driver, driver_of
from airhook.store.engine import Store
from airhook.store.tables import attempts, deliveries, subscriptions
from airhook.store.times import aware as _aware
from airhook.store.times import to_utc as _utc

__all__ = [
    "FINAL_FAILURES",
    "STATUSES",
    "Added",
    "Attempt",
    "Claimed",
    "Delivery",
    "DeliveryNotFoundError",
    "NewDelivery",
    "OutboxRepository",
    "Recorded",
    "Settled",
    "pause_pending",
    "pause_stranded",
    "resume_paused",
]

Status = Literal["pending", "sending", "delivered", "failed", "dead", "paused"]
STATUSES: tuple[str, ...] = ("pending", "sending", "delivered", "failed", "dead", "paused")
#: Deliveries that will not go out without a replay: the dead letters.
FINAL_FAILURES: tuple[str, ...] = ("failed", "dead")
#: Rows per multi-row statement: 500 rows of at most 10 values stay below SQLite's (32,766) and
#: PostgreSQL's (65,535) parameter limits.
_ROWS = 500
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


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery about to be added: ``status`` is ``pending``, or ``paused`` when disabled."""

    message_id: str
    subscription: str
    event: str
    body: str
    platform: str | None = None
    publication: str | None = None
    status: Literal["pending", "paused"] = "pending"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as stored."""

    id: int
    message_id: str
    subscription: str
    event: str
    platform: str | None
    publication: str | None
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """Return the delivery without its body, JSON-ready (for listings and XCom)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.message_id,
            "subscription": self.subscription,
            "event": self.event,
            "platform": self.platform,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }


def _delivery(row: Any) -> Delivery:
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


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for sending: only what a sender needs (no times to convert)."""

    message_id: str
    subscription: str
    body: str
    #: attempts made in the current round before this one.
    attempts: int = 0
    #: the claim's token: settling, renewing and releasing the delivery need it.
    token: str | None = None


@dataclass(frozen=True)
class Added:
    """What :meth:`OutboxRepository.add_claimed` did.

    :param created: the ids that were new, in the order given.
    :param claimed: the new deliveries inserted as ``sending`` (their subscription is active),
        claimed for the caller, who sends them from memory.
    """

    created: list[str]
    claimed: list[Claimed]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt, as logged: never a request header, a secret or a signature.

    :param outcome: ``delivered``, ``retry``, ``failed``, ``gone`` (410) or ``refused`` (the
        destination policy refused the URL; nothing was sent).
    :param response_excerpt: at most 512 characters of the response body, with anything that
        was a secret of the request blanked out.
    """

    message_id: str
    subscription: str
    attempted_at: datetime
    outcome: str
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    response_excerpt: str | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """What one attempt settles for its delivery: recorded by :meth:`OutboxRepository.record`.

    :param status: ``delivered``, ``pending`` (retry at ``next_attempt_at``), ``failed`` or
        ``dead``.
    :param disable: a reason to disable the subscription whatever its count (410 Gone).
    """

    attempt: Attempt
    status: Literal["delivered", "pending", "failed", "dead"]
    next_attempt_at: datetime | None = None
    disable: str | None = None
    #: the claim the attempt was made under (:attr:`Claimed.token`); ``None``: any claim.
    token: str | None = None


@dataclass
class Recorded:
    """What recording a batch of attempts changed."""

    #: subscription name -> the reason it was disabled by this batch.
    disabled: dict[str, str] = field(default_factory=dict)
    #: deliveries that were paused instead of scheduled (their subscription is disabled).
    paused: list[str] = field(default_factory=list)
    #: deliveries not settled: their claim had lapsed and another sender held them.
    stale: list[str] = field(default_factory=list)


def _new_token() -> str:
    return secrets.token_hex(16)


def _held_by(token: str | None) -> list[Any]:
    """The filter "still held by this claim" (nothing when no token is given)."""
    return [] if token is None else [deliveries.c.claim_token == token]


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


class OutboxRepository:
    """Add, claim, settle, list and replay deliveries.

    Adding and settling are every publish's hot paths: their statements are written for the
    driver (sqlite3, psycopg2; see :mod:`airhook.store.driver`), with no SQLAlchemy Core twin,
    so a store whose driver has another parameter style is refused here, with a ``ValueError``.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        driver = driver_of(store)
        if driver is None:
            dialect = store.write_engine.dialect
            raise ValueError(
                "the outbox writes its statements for DB-API drivers with the qmark, format or"
                f" pyformat parameter style (sqlite3, psycopg2): {dialect.driver} uses"
                f" {dialect.paramstyle}"
            )
        self._driver = driver

    # --- adding and claiming ---------------------------------------------------------------------

    def add(self, new: Sequence[NewDelivery], *, now: datetime | None = None) -> list[str]:
        """Add deliveries not added before (by ``message_id``); return the ids that were new."""
        return self._add(new, now, None).created

    def add_claimed(
        self, new: Sequence[NewDelivery], *, lease_seconds: float, now: datetime | None = None
    ) -> Added:
        """Add deliveries not added before and claim the new ones whose subscription is active.

        Those are inserted as ``sending`` with a claim of ``lease_seconds``, in the insert's
        transaction, and returned: the caller sends them from memory, without reading them back
        through :meth:`claim`. The row exists (committed) before the caller's request leaves,
        and should the caller crash the claim lapses and another sender takes them over.
        A new delivery whose subscription is not active (any more) is added ``paused``; one of a
        subscription that no longer exists is added ``pending``, as :meth:`add` does.
        """
        return self._add(new, now, lease_seconds)

    def _add(
        self, new: Sequence[NewDelivery], now: datetime | None, lease_seconds: float | None
    ) -> Added:
        if not new:
            return Added([], [])
        now = _utc(now or datetime.now(timezone.utc))
        unique: dict[str, NewDelivery] = {}
        for d in new:
            unique.setdefault(d.message_id, d)  # the first of duplicates wins; order is kept
        lease_until = now + timedelta(seconds=lease_seconds) if lease_seconds is not None else None
        token = _new_token() if lease_until is not None else None
        created: set[str] = set()
        with self._store.begin() as connection:
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
            # The hot path of every publish: one multi-row INSERT per 500 rows, straight to
            # the driver (as the inbox does), times bound as Core binds them.
            driver = self._driver
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
                for start in range(0, len(rows), _ROWS):
                    chunk = rows[start : start + _ROWS]
                    params: list[Any] = []
                    for d, status, next_at in chunk:
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
                    cursor.execute(head + ", ".join([row_sql] * len(chunk)) + tail, params)
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

    def claim(
        self,
        *,
        now: datetime,
        lease_seconds: float,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
        limit: int = 10_000,
    ) -> list[Claimed]:
        """Claim the due deliveries among those selected; return them (now ``sending``).

        Due: ``pending`` whose next attempt has come, or ``sending`` whose claim has lapsed.
        The claim lasts ``lease_seconds`` (longer than an attempt can take). Returned oldest
        first, with only what sending needs.
        """
        now = _utc(now)
        lease_until = now + timedelta(seconds=lease_seconds)
        token = _new_token()
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
        with self._store.begin() as connection:
            for where in groups:
                if len(found) >= limit:
                    break
                chosen = (
                    sa.select(deliveries.c.id)
                    .where(*where)
                    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                    .limit(limit - len(found))
                )
                if not self._store.is_sqlite:
                    # Rows another sender is claiming right now are theirs: skip, do not wait.
                    chosen = chosen.with_for_update(skip_locked=True)
                rows = connection.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(chosen.scalar_subquery()), due)
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
        self,
        message_ids: Sequence[str],
        *,
        lease_seconds: float,
        token: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Extend the claim on deliveries still being sent (a long round must keep them).

        With ``token``, only the rows still held by that claim: one that lapsed and was taken
        over by another sender is theirs.
        """
        now = _utc(now or datetime.now(timezone.utc))
        lease_until = now + timedelta(seconds=lease_seconds)
        with self._store.begin() as connection:
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

    # --- settling --------------------------------------------------------------------------------

    def record(
        self, settled: Sequence[Settled], *, disable_after: int, now: datetime | None = None
    ) -> Recorded:
        """Record attempts and settle their deliveries, in the order given, in one transaction.

        A delivery that finally fails adds one to its subscription's consecutive failures; a
        delivered one resets them. At ``disable_after`` (or on ``disable``, for 410) an active
        subscription is disabled and its pending deliveries are paused. A retry of a
        subscription that is not active is paused instead of scheduled.

        This is the sender's hot path (once per flush of up to a thousand outcomes), so the
        delivery updates and the attempt rows go to the driver directly, one prepared statement
        run for all rows (SQLite) or one multi-row statement per 500 rows (PostgreSQL), rather
        than through SQLAlchemy Core's per-row work.
        """
        report = Recorded()
        if not settled:
            return report
        now = _utc(now or datetime.now(timezone.utc))
        names = sorted({s.attempt.subscription for s in settled})
        with self._store.begin() as connection:
            query = sa.select(
                subscriptions.c.name,
                subscriptions.c.active,
                subscriptions.c.consecutive_failures,
            ).where(subscriptions.c.name.in_(names))
            if not self._store.is_sqlite:
                # Serialise counting per subscription across processes (SQLite: BEGIN IMMEDIATE).
                query = query.with_for_update()
            state = {
                name: [bool(active), int(count)]
                for name, active, count in connection.execute(query)
            }
            before = {name: list(values) for name, values in state.items()}
            held = self._still_held(connection, settled)
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
            self._record_driver(connection, self._driver, updates, logged, now)
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

    def _still_held(self, connection: Connection, settled: Sequence[Settled]) -> set[str]:
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
            if not self._store.is_sqlite:
                query = query.order_by(deliveries.c.message_id).with_for_update()
            tokens.update((mid, token) for mid, token in connection.execute(query))
        return {
            item.attempt.message_id
            for item in settled
            if item.attempt.message_id in tokens
            and (item.token is None or tokens[item.attempt.message_id] == item.token)
        }

    @staticmethod
    def _record_driver(
        connection: Connection,
        driver: Driver,
        updates: Sequence[tuple[str, str, datetime | None, int | None, str | None, bool]],
        logged: Sequence[Attempt],
        now: datetime,
    ) -> None:
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
                for start in range(0, len(rows), _ROWS):
                    chunk = rows[start : start + _ROWS]
                    cursor.execute(
                        _SETTLE_HEAD + ", ".join([row_sql] * len(chunk)) + _SETTLE_TAIL,
                        [value for row in chunk for value in row],
                    )
            if not logged:
                return
            values = [
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
                cursor.executemany(head + row_sql, values)
            else:
                for start in range(0, len(values), _ROWS):
                    chunk = values[start : start + _ROWS]
                    cursor.execute(
                        head + ", ".join([row_sql] * len(chunk)),
                        [value for row in chunk for value in row],
                    )
        finally:
            cursor.close()

    def release(
        self,
        message_ids: Sequence[str],
        *,
        token: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Hand claimed deliveries back unattempted (due now), e.g. when their sender stops.

        With ``token``, only the rows still held by that claim.
        """
        now = _utc(now or datetime.now(timezone.utc))
        with self._store.begin() as connection:
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
                if not self._store.is_sqlite:
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

    # --- reading ---------------------------------------------------------------------------------

    def get(self, message_id: str) -> Delivery:
        """Return one delivery."""
        with self._store.read() as connection:
            row = connection.execute(
                sa.select(deliveries).where(deliveries.c.message_id == message_id)
            ).first()
        if row is None:
            raise DeliveryNotFoundError(message_id)
        return _delivery(row)

    def find(
        self,
        *,
        subscription: str | None = None,
        statuses: Sequence[str] | None = None,
        publication: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Delivery]:
        """Return deliveries, oldest first, selected by subscription, status, publication and
        creation time (``since`` inclusive, ``until`` exclusive)."""
        query = sa.select(deliveries).order_by(deliveries.c.created_at, deliveries.c.id)
        query = query.where(*self._filters(subscription, statuses, publication, since, until))
        if limit is not None:
            query = query.limit(limit)
        with self._store.read() as connection:
            return [_delivery(row) for row in connection.execute(query)]

    def attempts(self, message_id: str) -> list[Attempt]:
        """Return a delivery's attempts, oldest first."""
        with self._store.read() as connection:
            rows = connection.execute(
                sa.select(attempts)
                .where(attempts.c.message_id == message_id)
                .order_by(attempts.c.attempted_at, attempts.c.id)
            ).all()
        return [
            Attempt(
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
        self,
        *,
        publication: str | None = None,
        subscription: str | None = None,
        message_ids: Sequence[str] | None = None,
    ) -> tuple[dict[str, int], datetime | None]:
        """Return the number of deliveries per status, and the earliest pending next attempt."""
        counts = dict.fromkeys(STATUSES, 0)
        earliest: datetime | None = None
        base = self._filters(subscription, None, publication, None, None)
        groups = (
            [[*base, deliveries.c.message_id.in_(chunk)] for chunk in chunks(message_ids)]
            if message_ids is not None
            else [base]
        )
        with self._store.read() as connection:
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

    @staticmethod
    def _filters(
        subscription: str | None,
        statuses: Sequence[str] | None,
        publication: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[Any]:
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

    # --- replay ----------------------------------------------------------------------------------

    def replay(
        self,
        *,
        message_id: str | None = None,
        subscription: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        statuses: Sequence[str] = FINAL_FAILURES,
        now: datetime | None = None,
    ) -> list[str]:
        """Reset deliveries for a fresh round of attempts, due now; return their ids.

        One delivery (``message_id``, whatever its status but ``sending``), or a
        subscription's deliveries in ``statuses`` created in ``[since, until)``. Deliveries
        of a subscription that is not active become ``paused`` instead: they go out when it is
        enabled.
        """
        if (message_id is None) == (subscription is None):
            raise ValueError("replay one delivery (message_id) or a subscription's, not both")
        now = _utc(now or datetime.now(timezone.utc))
        if message_id is not None:
            where = [deliveries.c.message_id == message_id, deliveries.c.status != "sending"]
        else:
            where = self._filters(subscription, statuses, None, since, until)
        with self._store.begin() as connection:
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
