"""Shared fixtures: a private PostgreSQL server, stores on SQLite and PostgreSQL, a cipher."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airhook.store import Store
from airhook.store.migrate import upgrade
from devstack.postgres import PostgresServer, postgres_binaries

pytest_plugins = ["tests.log_secrets"]  # after the whole run: no secret in any log file

_REPLACED_HANDLERS: list[int] = []


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Let SIGTERM and SIGHUP end a run the way Ctrl-C does: every fixture's teardown runs.

    By default either signal ends pytest at once, and what fixtures started in sessions of their
    own (Airflow components, servers) would outlive the run.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _interrupt)
            _REPLACED_HANDLERS.append(signum)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _REPLACED_HANDLERS:
        signal.signal(_REPLACED_HANDLERS.pop(), signal.SIG_DFL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of our own on 127.0.0.1, for this test session; yields its base URL.

    ``AIRHOOK_TEST_POSTGRES_URL`` points at an existing server instead. Where neither is
    possible the tests that need PostgreSQL skip, except under CI, where they fail. The server
    stops, and its directory goes, however the session ends, ``kill -9`` included
    (``devstack/postgres.py`` says how).
    """
    external = os.environ.get("AIRHOOK_TEST_POSTGRES_URL")
    if external:
        yield external.rstrip("/")
        return
    if postgres_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing (.ci/run installs them)")
        pytest.skip("no PostgreSQL server binaries (initdb, postgres) on this machine")
    server = PostgresServer.start()
    try:
        yield server.url
    finally:
        server.stop()


def create_postgres_database(base_url: str, name: str | None = None) -> str:
    """Create a fresh database on the test server; return its URL."""
    import sqlalchemy as sa

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated airhook store, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'airhook.db'}"
    else:
        url = create_postgres_database(request.getfixturevalue("postgres_url"))
    created = Store(url)
    upgrade(created)
    yield created
    created.dispose()


@pytest.fixture
def cipher() -> Fernet:
    """A Fernet with a fresh key, standing in for Airflow's."""
    return Fernet(Fernet.generate_key())
