"""What the store's hot paths need to talk to the DB-API driver without SQLAlchemy Core.

The receiver's inbox insert and the fan-out engine's outbox insert and outcome records run once
per batch with hundreds of rows; Core's per-execution work (compiling, "insertmanyvalues"
batching, result processing) was most of their CPU. They write their statements for the driver
themselves, with its parameter marker, and bind times exactly as Core would, so that a row reads
back the same whichever path wrote it.

Each of those operations has that one SQL path, with no SQLAlchemy Core twin, so a store whose
driver has another parameter style is refused when the repository is built
(:func:`require_driver`), not at its first write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airhook.core.errors import SetupError
from airhook.store.engine import Store
from airhook.store.times import to_utc

__all__ = ["ROWS_PER_STATEMENT", "Driver", "driver_of", "require_driver"]

# "?" for sqlite3; "%s" for psycopg2, psycopg and pg8000 (pyformat drivers take it too).
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}

#: Rows per multi-row statement: 500 rows of at most 11 values stay below SQLite's (32,766) and
#: PostgreSQL's (65,535) parameter limits.
ROWS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class Driver:
    """The write engine's driver, as the hot paths use it."""

    #: the driver's parameter marker
    marker: str
    sqlite: bool
    #: a time as Core binds it to a ``DateTime(timezone=True)`` column (converted to UTC)
    time: Callable[[datetime], Any]


def driver_of(store: Store) -> Driver | None:
    """The store's driver, or ``None`` for a parameter style the hot paths do not write."""
    dialect = store.write_engine.dialect
    marker = _MARKERS.get(dialect.paramstyle)
    if marker is None:
        return None
    # Every time column of the store is DateTime(timezone=True): one processor serves them all.
    process = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)

    def time(value: datetime) -> Any:
        value = to_utc(value)
        return process(value) if process is not None else value

    return Driver(marker, store.is_sqlite, time)


def require_driver(store: Store, what: str) -> Driver:
    """The store's driver, or a :class:`~airhook.core.errors.SetupError` naming ``[airhook]
    database_url`` when ``what`` (``"the inbox"``, ``"the outbox"``) cannot write to it."""
    driver = driver_of(store)
    if driver is None:
        dialect = store.write_engine.dialect
        raise SetupError(
            "[airhook] database_url",
            f"{what} writes its statements for DB-API drivers with the qmark, format or"
            f" pyformat parameter style (sqlite3, psycopg2): {dialect.driver} uses"
            f" {dialect.paramstyle}",
        )
    return driver
