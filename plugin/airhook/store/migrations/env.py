"""Alembic environment of the airhook store: always run on a connection handed in by migrate.py."""

from __future__ import annotations

from alembic import context

from airhook.store.migrate import VERSION_TABLE
from airhook.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
