"""Bring the airhook store's schema up to date (Alembic), safely from several processes at once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from airhook.store.engine import Store

__all__ = ["VERSION_TABLE", "current_revision", "downgrade", "head_revision", "upgrade"]

#: Its own version table, so that the store can share a database with Airflow's without a clash.
VERSION_TABLE = "airhook_alembic_version"
_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x41495248  # "AIRH": the PostgreSQL advisory lock that serialises migrations


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """Return the newest migration's revision."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    """Return the revision the store is at (None for an empty database)."""
    with store.read() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(store: Store, revision: str = "head") -> None:
    """Migrate the store to ``revision``; concurrent callers wait for each other."""
    config = _config()
    with store.begin() as connection:
        # SQLite: the write transaction began IMMEDIATE, which already excludes other writers.
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_ID)))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(store: Store, revision: str) -> None:
    """Migrate the store back to ``revision`` (``"base"``: drop every airhook table)."""
    config = _config()
    with store.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_ID)))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
