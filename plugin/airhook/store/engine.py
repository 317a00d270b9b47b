"""Engines for the airhook store: SQLite tuned for durable concurrent use, or PostgreSQL.

Every engine hides bound parameters from its error messages: a failed insert would otherwise put
the delivery's payload (and a failed source write its encrypted credentials) into a log line."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = ["Store", "get_store"]

_SQLITE_BUSY_MS = 30_000
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes (sqlite3 names them from Python 3.11 on)
_BEGIN_RETRY_FIRST_S, _BEGIN_RETRY_MAX_S = 0.0001, 0.001


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (worth waiting for)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11 and later
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    # Python 3.10: only the message tells ("database is locked", "database table is locked").
    return "is locked" in str(exc)


def _while_busy(run: Callable[[], object], first_delay: float, max_delay: float) -> None:
    """Call ``run`` until SQLite stops answering "busy"/"locked", for up to ``_SQLITE_BUSY_MS``.

    Waits ``first_delay`` after the first refusal, doubling up to ``max_delay``; any other error,
    or the last refusal after the deadline, is raised.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    delay = first_delay
    while True:
        try:
            run()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def _enable_wal(cursor: Any) -> bool:
    """Switch the database file to WAL, waiting while another connection holds it; return
    whether it is in WAL mode now (an in-memory database, for one, cannot be).

    SQLite answers "database is locked" to this pragma at once, without calling the busy
    handler, when another process is switching the same new file at the same moment (several
    API server workers starting on a fresh store): wait and retry, as busy_timeout would.
    """
    modes: list[str] = []
    _while_busy(
        lambda: modes.append(str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0])),
        0.02,
        0.02,
    )
    return modes[-1].lower() == "wal"


def _begin_immediate(dbapi_connection: Any) -> None:
    """``BEGIN IMMEDIATE``, retried every fraction of a millisecond while another writer holds
    the lock, for up to ``_SQLITE_BUSY_MS``.

    Why not SQLite's busy timeout: its handler sleeps 1, 2, 5, 10, 15, 20, 25 … 100 ms between
    tries. Against a writer that commits every few milliseconds (the receiver's group commit
    under load) a waiting writer keeps waking up while the lock is taken again, and sleeps
    longer each time: the dispatcher's three short transactions per batch took up to half a
    second each, and it fell behind the receiver (docs/performance.md). Polling with a short,
    capped delay takes the lock in the next gap.
    """
    _while_busy(
        lambda: dbapi_connection.execute("BEGIN IMMEDIATE"),
        _BEGIN_RETRY_FIRST_S,
        _BEGIN_RETRY_MAX_S,
    )


def _sqlite_engine(url: str, begin: str) -> Engine:
    immediate = begin == "BEGIN IMMEDIATE"
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control from pysqlite so that BEGIN is ours to choose (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer. synchronous=FULL: an acknowledged event survives
        # a power cut, not only a process crash; group commit pays the fsync once per batch.
        wal = _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        # Writers wait for the write lock in _begin_immediate, the only statement of theirs
        # that waits for a lock in WAL mode; readers, and every connection not in WAL mode
        # (where a COMMIT waits for readers), keep SQLite's busy handler.
        polls = immediate and wal
        record.info["airhook_polls_for_lock"] = polls
        cursor.execute(f"PRAGMA busy_timeout={0 if polls else _SQLITE_BUSY_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the lock at BEGIN (IMMEDIATE): a deferred transaction that upgrades to a
        # writer later can fail with "database is locked" without waiting for busy_timeout.
        if connection.info.get("airhook_polls_for_lock"):
            try:
                _begin_immediate(connection.connection.driver_connection)
            except sqlite3.Error as exc:
                # As exec_driver_sql would raise it: callers handle SQLAlchemy's errors.
                raise sa.exc.DBAPIError.instance(
                    begin, None, exc, sqlite3.Error, hide_parameters=True
                ) from exc
        else:
            connection.exec_driver_sql(begin)

    return engine


class Store:
    """The airhook store at one URL: a write engine and a read engine (the same on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(url, "BEGIN")
        else:
            self.write_engine = sa.create_engine(
                url, pool_pre_ping=True, pool_size=5, hide_parameters=True
            )
            self.read_engine = self.write_engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends without an exception."""
        with self.write_engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self.read_engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


_stores: dict[tuple[str, int], Store] = {}
_lock = threading.Lock()


def get_store(url: str | None = None) -> Store:
    """Return this process's store for ``url`` (default: ``[airhook] database_url``)."""
    if url is None:
        from airhook.config import database_url

        url = database_url()
    key = (url, os.getpid())  # pooled connections must not cross a fork
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(url)
        return store
