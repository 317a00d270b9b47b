"""Shared fixtures: a private PostgreSQL server, stores on SQLite and PostgreSQL, a cipher."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airhook.store import Store
from airhook.store.migrate import upgrade
from devstack import free_port


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server of our own on 127.0.0.1, for this test session; yields its base URL.

    ``AIRHOOK_TEST_POSTGRES_URL`` points at an existing server instead. Where neither is
    possible the tests that need PostgreSQL skip, except under CI, where they fail.
    """
    external = os.environ.get("AIRHOOK_TEST_POSTGRES_URL")
    if external:
        yield external.rstrip("/")
        return
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not (initdb and postgres):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing (.ci/run installs them)")
        pytest.skip("no PostgreSQL server binaries (initdb, postgres) on this machine")
    # tmpfs where there is one: initdb, CREATE DATABASE and the final clean-up are several times
    # faster there than on a disk mounted with discard (and a test server needs no durability).
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
    root = base / f"airhook-pg-{uuid.uuid4().hex[:8]}"
    data = root / "data"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # the postgres user writes here when we run as root
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "airhook", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = root / "postgres.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        _as_postgres(
            [
                postgres,
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "fsync=on",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        start_new_session=True,
    )
    url = f"postgresql+psycopg2://airhook@127.0.0.1:{port}"
    import sqlalchemy as sa

    deadline = time.monotonic() + 60
    while True:
        try:
            engine = sa.create_engine(f"{url}/postgres")
            with engine.connect():
                pass
            engine.dispose()
            break
        except sa.exc.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {log.read_text()}") from None
            time.sleep(0.3)
    try:
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
        log_file.close()
        shutil.rmtree(root, ignore_errors=True)


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
