"""Subscriptions in the store: rows to :class:`~airhook.core.subscription.Subscription` and back.

As for sources, what is secret (the URL, the signing secrets, the extra headers' values) is
stored as one Fernet token of a JSON object, encrypted by the caller's cipher; the clear columns
hold only what a listing may show (the URL's origin, the header names).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from airhook.core.errors import SubscriptionExistsError, SubscriptionNotFoundError
from airhook.core.secrets import Cipher, Secret, SecretPair
from airhook.core.subscription import Subscription
from airhook.store.engine import Store
from airhook.store.outbox import pause_pending, resume_paused
from airhook.store.tables import attempts, deliveries, subscriptions
from airhook.store.times import aware as _aware
from airhook.store.times import to_utc as _utc
from airhook.store.times import utc_now as _now

__all__ = [
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "SubscriptionRepository",
]


class SubscriptionRepository:
    """Create, read, change and delete subscriptions."""

    def __init__(self, store: Store, cipher: Cipher) -> None:
        self._store = store
        self._cipher = cipher

    # --- mapping ---------------------------------------------------------------------------------

    def _seal(self, subscription: Subscription) -> str:
        pair = subscription.secrets
        credentials: dict[str, Any] = {
            "url": subscription.url,
            "primary": pair.primary.reveal() if pair else None,
            "secondary": pair.secondary.reveal() if pair and pair.secondary else None,
            "headers": {name: value.reveal() for name, value in subscription.headers.items()},
        }
        return self._cipher.encrypt(json.dumps(credentials).encode()).decode("ascii")

    def unseal(self, row: Any) -> Subscription:
        """Return the subscription of a row of ``airhook_subscription`` (decrypting it)."""
        credentials = json.loads(self._cipher.decrypt(row.credentials.encode("ascii")))
        secrets = None
        if credentials.get("primary"):
            secondary = credentials.get("secondary")
            secrets = SecretPair(
                primary=Secret(credentials["primary"]),
                secondary=Secret(secondary) if secondary else None,
            )
        return Subscription(
            name=row.name,
            url=credentials["url"],
            events=tuple(row.events or ("*",)),
            chatbot_ids=tuple(row.chatbot_ids or ()),
            scheme=row.scheme,
            secrets=secrets,
            scheme_options=dict(row.scheme_options or {}),
            active=bool(row.active),
            method=row.method,
            timeout=row.timeout_seconds,
            headers={k: Secret(v) for k, v in credentials.get("headers", {}).items()},
            body_template=row.body_template,
            retry_schedule=tuple(float(d) for d in row.retry_schedule),
            consecutive_failures=int(row.consecutive_failures),
            disabled_reason=row.disabled_reason,
            disabled_at=_aware(row.disabled_at),
            created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at),
        )

    def _values(self, subscription: Subscription) -> dict[str, Any]:
        return {
            "name": subscription.name,
            "origin": subscription.origin,
            "events": list(subscription.events),
            "chatbot_ids": list(subscription.chatbot_ids),
            "scheme": subscription.scheme,
            "scheme_options": dict(subscription.scheme_options),
            "credentials": self._seal(subscription),
            "header_names": sorted(subscription.headers),
            "active": subscription.active,
            "method": subscription.method,
            "timeout_seconds": subscription.timeout,
            "body_template": subscription.body_template,
            "retry_schedule": list(subscription.retry_schedule),
            "consecutive_failures": subscription.consecutive_failures,
            "disabled_reason": subscription.disabled_reason,
            "disabled_at": _utc(subscription.disabled_at),
        }

    # --- operations ------------------------------------------------------------------------------

    def create(self, subscription: Subscription) -> Subscription:
        """Store a new subscription; raise :class:`SubscriptionExistsError` if the name is taken."""
        now = _now()
        taken = SubscriptionExistsError(subscription.name)
        try:
            with self._store.begin() as connection:
                exists = connection.scalar(
                    sa.select(subscriptions.c.id).where(subscriptions.c.name == subscription.name)
                )
                if exists is not None:
                    raise taken
                connection.execute(
                    subscriptions.insert().values(
                        **self._values(subscription), created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            # PostgreSQL: another transaction created the name between our check and insert.
            raise taken from None
        return self.get(subscription.name)

    def save(self, subscription: Subscription) -> Subscription:
        """Replace an existing subscription's settings (name unchanged).

        The failure count and the disabled state are the delivery engine's to change while
        deliveries run; use :meth:`enable` and :meth:`disable` for those, not a save of a copy
        read earlier.
        """
        values = self._values(subscription)
        for owned_by_engine in ("consecutive_failures", "disabled_reason", "disabled_at", "active"):
            values.pop(owned_by_engine)
        with self._store.begin() as connection:
            result = connection.execute(
                subscriptions.update()
                .where(subscriptions.c.name == subscription.name)
                .values(**values, updated_at=_now())
            )
            if result.rowcount == 0:
                raise SubscriptionNotFoundError(subscription.name)
        return self.get(subscription.name)

    def get(self, name: str) -> Subscription:
        """Return the subscription called ``name``."""
        with self._store.read() as connection:
            row = connection.execute(
                sa.select(subscriptions).where(subscriptions.c.name == name)
            ).first()
        if row is None:
            raise SubscriptionNotFoundError(name)
        return self.unseal(row)

    def all(self) -> list[Subscription]:
        """Return every subscription, by name."""
        with self._store.read() as connection:
            rows = connection.execute(sa.select(subscriptions).order_by(subscriptions.c.name)).all()
        return [self.unseal(row) for row in rows]

    def delete(self, name: str) -> None:
        """Delete a subscription with its deliveries and their attempts."""
        with self._store.begin() as connection:
            result = connection.execute(subscriptions.delete().where(subscriptions.c.name == name))
            if result.rowcount == 0:
                raise SubscriptionNotFoundError(name)
            connection.execute(deliveries.delete().where(deliveries.c.subscription == name))
            connection.execute(attempts.delete().where(attempts.c.subscription == name))

    def enable(self, name: str) -> Subscription:
        """Switch a subscription on, reset its failure count and resume its paused deliveries.

        Paused deliveries become due now, with a fresh round of attempts.
        """
        now = _now()
        with self._store.begin() as connection:
            result = connection.execute(
                subscriptions.update()
                .where(subscriptions.c.name == name)
                .values(
                    active=True,
                    consecutive_failures=0,
                    disabled_reason=None,
                    disabled_at=None,
                    updated_at=now,
                )
            )
            if result.rowcount == 0:
                raise SubscriptionNotFoundError(name)
            resume_paused(connection, name, now)
        return self.get(name)

    def disable(self, name: str, reason: str) -> Subscription:
        """Disable a subscription; its pending deliveries (and later events) wait as paused."""
        now = _now()
        with self._store.begin() as connection:
            result = connection.execute(
                subscriptions.update()
                .where(subscriptions.c.name == name)
                .values(active=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now)
            )
            if result.rowcount == 0:
                raise SubscriptionNotFoundError(name)
            pause_pending(connection, [name], now)
        return self.get(name)
