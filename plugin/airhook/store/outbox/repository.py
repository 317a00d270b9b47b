"""The outbox's one public face: every operation on deliveries, each done by the module of its job.

Adding (:mod:`.adding`), claiming (:mod:`.claims`), settling (:mod:`.settling`), reading
(:mod:`.queries`) and replaying (:mod:`.replay`) each have one SQL path. Adding and settling, the
hot paths of every publish, write theirs for the driver (sqlite3, psycopg2; see
:mod:`airhook.store.driver`); the rest go through SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from airhook.store.driver import require_driver
from airhook.store.engine import Store
from airhook.store.outbox import claims, queries, settling
from airhook.store.outbox import replay as replaying
from airhook.store.outbox.adding import add_deliveries
from airhook.store.outbox.records import (
    FINAL_FAILURES,
    Added,
    AttemptRecord,
    Claimed,
    Delivery,
    NewDelivery,
    Recorded,
    Settled,
)

__all__ = ["OutboxRepository"]


class OutboxRepository:
    """Add, claim, settle, list and replay deliveries.

    Adding and settling are every publish's hot paths: their statements are written for the
    driver (sqlite3, psycopg2; see :mod:`airhook.store.driver`), with no SQLAlchemy Core twin,
    so a store whose driver has another parameter style is refused here, with a
    :class:`~airhook.core.errors.SetupError` naming ``[airhook] database_url``.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._driver = require_driver(store, "the outbox")

    # --- adding and claiming ---------------------------------------------------------------------

    def add(self, new: Sequence[NewDelivery], *, now: datetime | None = None) -> list[str]:
        """Add deliveries not added before (by ``message_id``); return the ids that were new."""
        return add_deliveries(self._store, self._driver, new, now=now, lease_seconds=None).created

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
        return add_deliveries(self._store, self._driver, new, now=now, lease_seconds=lease_seconds)

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
        return claims.claim(
            self._store,
            now=now,
            lease_seconds=lease_seconds,
            message_ids=message_ids,
            publication=publication,
            subscription=subscription,
            limit=limit,
        )

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
        claims.extend(self._store, message_ids, lease_seconds=lease_seconds, token=token, now=now)

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
        claims.release(self._store, message_ids, token=token, now=now)

    # --- settling --------------------------------------------------------------------------------

    def record(
        self, settled: Sequence[Settled], *, disable_after: int, now: datetime | None = None
    ) -> Recorded:
        """Record attempts and settle their deliveries, in the order given, in one transaction.

        A delivery that finally fails adds one to its subscription's consecutive failures; a
        delivered one resets them. At ``disable_after`` (or on ``disable``, for 410) an active
        subscription is disabled and its pending deliveries are paused. A retry of a
        subscription that is not active is paused instead of scheduled.
        """
        return settling.record(
            self._store, self._driver, settled, disable_after=disable_after, now=now
        )

    # --- reading ---------------------------------------------------------------------------------

    def get(self, message_id: str) -> Delivery:
        """Return one delivery; raise :class:`DeliveryNotFoundError` if there is none."""
        return queries.get(self._store, message_id)

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
        return queries.find(
            self._store,
            subscription=subscription,
            statuses=statuses,
            publication=publication,
            since=since,
            until=until,
            limit=limit,
        )

    def page(
        self,
        *,
        subscription: str | None = None,
        statuses: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Delivery], int]:
        """Return a page of deliveries, newest first, and how many match in all (selected as
        :meth:`find` selects)."""
        return queries.page(
            self._store,
            subscription=subscription,
            statuses=statuses,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def settled_per_bucket(
        self, since: datetime, bucket_seconds: int
    ) -> dict[datetime, dict[str, int]]:
        """Deliveries that ended since ``since``, counted per time bucket and final status."""
        return queries.settled_per_bucket(self._store, since, bucket_seconds)

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """Return a delivery's attempts, oldest first."""
        return queries.attempts_of(self._store, message_id)

    def oldest_due(self, now: datetime) -> datetime | None:
        """When the longest-waiting due delivery fell due; ``None`` when nothing is due."""
        return queries.oldest_due(self._store, now)

    def counts(
        self,
        *,
        publication: str | None = None,
        subscription: str | None = None,
        message_ids: Sequence[str] | None = None,
    ) -> tuple[dict[str, int], datetime | None]:
        """Return the number of deliveries per status, and the earliest pending next attempt."""
        return queries.counts(
            self._store,
            publication=publication,
            subscription=subscription,
            message_ids=message_ids,
        )

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
        return replaying.replay(
            self._store,
            message_id=message_id,
            subscription=subscription,
            since=since,
            until=until,
            statuses=statuses,
            now=now,
        )
