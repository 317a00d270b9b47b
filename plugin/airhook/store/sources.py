"""Sources in the store: rows to :class:`~airhook.core.source.Source` and back, encrypted.

Credentials (signing secrets, bearer tokens, basic passwords) are stored as one Fernet token of
a JSON object, encrypted with Airflow's Fernet key by the caller's cipher: the store never holds
a secret in the clear and never decides how it is encrypted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from sqlalchemy.exc import IntegrityError

from airhook.core.access import BasicCredentials
from airhook.core.errors import SourceExistsError, SourceNotFoundError
from airhook.core.secrets import Cipher, Secret, SecretPair
from airhook.core.source import Source
from airhook.store.engine import Store
from airhook.store.tables import sources
from airhook.store.times import aware as _aware
from airhook.store.times import utc_now as _now

# The errors are defined in the core's one tree and named here too, where they are raised.
__all__ = ["SourceExistsError", "SourceNotFoundError", "SourceRepository"]


class SourceRepository:
    """Create, read, change and delete sources."""

    def __init__(self, store: Store, cipher: Cipher) -> None:
        self._store = store
        self._cipher = cipher

    # --- mapping ---------------------------------------------------------------------------------

    def _seal(self, source: Source) -> str:
        credentials: dict[str, Any] = {
            "primary": source.secrets.primary.reveal() if source.secrets else None,
            "secondary": (
                source.secrets.secondary.reveal()
                if source.secrets and source.secrets.secondary
                else None
            ),
            "bearer": [token.reveal() for token in source.bearer_tokens],
            "basic": [[c.username, c.password.reveal()] for c in source.basic_credentials],
        }
        return self._cipher.encrypt(json.dumps(credentials).encode()).decode("ascii")

    def _unseal(self, row: Any) -> Source:
        credentials = json.loads(self._cipher.decrypt(row.credentials.encode("ascii")))
        secrets = None
        if credentials.get("primary"):
            secondary = credentials.get("secondary")
            secrets = SecretPair(
                primary=Secret(credentials["primary"]),
                secondary=Secret(secondary) if secondary else None,
            )
        return Source(
            name=row.name,
            profile=row.profile,
            scheme=row.scheme,
            secrets=secrets,
            scheme_options=dict(row.scheme_options or {}),
            bearer_tokens=tuple(Secret(t) for t in credentials.get("bearer", [])),
            basic_credentials=tuple(
                BasicCredentials(u, Secret(p)) for u, p in credentials.get("basic", [])
            ),
            allow_ips=tuple(row.allow_ips or ()),
            chatbot_ids=tuple(row.chatbot_ids or ()),
            events=tuple(row.events or ("*",)),
            max_body_bytes=row.max_body_bytes,
            active=bool(row.active),
            created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at),
        )

    def _values(self, source: Source) -> dict[str, Any]:
        return {
            "name": source.name,
            "profile": source.profile,
            "scheme": source.scheme,
            "scheme_options": dict(source.scheme_options),
            "credentials": self._seal(source),
            "allow_ips": list(source.allow_ips),
            "chatbot_ids": list(source.chatbot_ids),
            "events": list(source.events),
            "max_body_bytes": source.max_body_bytes,
            "active": source.active,
        }

    # --- operations ------------------------------------------------------------------------------

    def create(self, source: Source) -> Source:
        """Store a new source; raise :class:`SourceExistsError` if the name is taken."""
        now = _now()
        taken = SourceExistsError(source.name)
        try:
            with self._store.begin() as connection:
                exists = connection.scalar(
                    sa.select(sources.c.id).where(sources.c.name == source.name)
                )
                if exists is not None:
                    raise taken
                connection.execute(
                    sources.insert().values(**self._values(source), created_at=now, updated_at=now)
                )
        except IntegrityError:
            # PostgreSQL: another transaction created the name between our check and insert.
            raise taken from None
        return self.get(source.name)

    def save(self, source: Source) -> Source:
        """Replace an existing source's settings (name unchanged)."""
        with self._store.begin() as connection:
            result = connection.execute(
                sources.update()
                .where(sources.c.name == source.name)
                .values(**self._values(source), updated_at=_now())
            )
            if result.rowcount == 0:
                raise SourceNotFoundError(source.name)
        return self.get(source.name)

    def get(self, name: str) -> Source:
        """Return the source called ``name``."""
        with self._store.read() as connection:
            row = connection.execute(sa.select(sources).where(sources.c.name == name)).first()
        if row is None:
            raise SourceNotFoundError(name)
        return self._unseal(row)

    def all(self) -> list[Source]:
        """Return every source, by name."""
        return [self._unseal(row) for row in self._rows()]

    def _rows(self) -> list[Any]:
        with self._store.read() as connection:
            return list(connection.execute(sa.select(sources).order_by(sources.c.name)).all())

    def readable(self) -> tuple[list[Source], list[str]]:
        """Return the sources whose credentials decrypt, and the names of those that do not.

        For the receiver: one source sealed with a key it no longer has must not take every
        other source down with it.
        """
        found: list[Source] = []
        unreadable: list[str] = []
        for row in self._rows():
            try:
                found.append(self._unseal(row))
            except (InvalidToken, ValueError):  # a wrong key, or damaged credentials
                unreadable.append(row.name)
        return found, unreadable

    def iter_names(self) -> Iterator[str]:
        """Yield every source name."""
        with self._store.read() as connection:
            yield from connection.scalars(sa.select(sources.c.name).order_by(sources.c.name))

    def delete(self, name: str) -> None:
        """Delete a source; its recorded events stay in the inbox."""
        with self._store.begin() as connection:
            result = connection.execute(sources.delete().where(sources.c.name == name))
            if result.rowcount == 0:
                raise SourceNotFoundError(name)

    def version(self) -> tuple[int, datetime | None]:
        """Return (count, newest change): a cheap way to notice that any source changed."""
        with self._store.read() as connection:
            count, newest = connection.execute(
                sa.select(sa.func.count(sources.c.id), sa.func.max(sources.c.updated_at))
            ).one()
        return int(count), _aware(newest)
