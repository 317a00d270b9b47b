"""Named leases in the store: one holder at a time, taken over when the holder stops renewing."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from airhook.store.engine import Store
from airhook.store.tables import leases
from airhook.store.times import aware, to_utc, utc_now

__all__ = ["LeaseRepository"]


class LeaseRepository:
    """Acquire, renew and release leases."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def acquire(self, name: str, holder: str, ttl: float, now: datetime | None = None) -> bool:
        """Take or renew the lease ``name`` for ``holder``; return whether ``holder`` has it.

        Without ``now``, PostgreSQL's clock decides (``now()``): holders on several hosts then
        compare one clock, so a host whose clock runs ahead cannot take a lease too early.
        SQLite (one machine) uses this process's clock.
        """
        try:
            with self._store.begin() as connection:
                if now is None and not self._store.is_sqlite:
                    now = connection.scalar(sa.select(sa.func.now()))
                # UTC always: SQLite compares the stored times as text, without their offset.
                now = to_utc(now or utc_now())
                expires = now + timedelta(seconds=ttl)
                result = connection.execute(
                    leases.update()
                    .where(
                        leases.c.name == name,
                        sa.or_(leases.c.holder == holder, leases.c.expires_at < now),
                    )
                    .values(holder=holder, expires_at=expires)
                )
                if result.rowcount:
                    return True
                exists = connection.scalar(sa.select(leases.c.name).where(leases.c.name == name))
                if exists is not None:
                    return False
                connection.execute(
                    leases.insert().values(name=name, holder=holder, expires_at=expires)
                )
                return True
        except IntegrityError:
            return False  # another process inserted it first

    def release(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` has it."""
        with self._store.begin() as connection:
            connection.execute(
                leases.delete().where(leases.c.name == name, leases.c.holder == holder)
            )

    def holder(self, name: str) -> str | None:
        """Return who holds the lease now (None if nobody or it expired)."""
        now = utc_now()
        with self._store.read() as connection:
            row = connection.execute(
                sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        if row is None:
            return None
        expires = aware(row.expires_at)
        return row.holder if expires is not None and expires >= now else None
