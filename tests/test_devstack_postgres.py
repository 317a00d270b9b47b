"""The test PostgreSQL server never outlives its owner: not after a stop, a failed test, SIGTERM,
or ``kill -9``; its processes, found by their working directory, end and its directory goes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.postgres import PostgresServer, postgres_binaries, processes_in
from tests.guarded import REPO, assert_the_server_goes_with_its_owner, end, gone

pytestmark = pytest.mark.skipif(
    postgres_binaries() is None, reason="no PostgreSQL server binaries (initdb, postgres)"
)

# A test session of its own, run by pytest in a subprocess: it names the server's data directory,
# then fails or waits to be interrupted; its fixture notes that teardown ran.
INNER_TESTS = """
import time
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.fixture
def noted():
    yield
    Path(__file__).with_name("torn-down").write_text("yes")


def _data_directory(url):
    engine = sa.create_engine(url + "/postgres")
    with engine.connect() as connection:
        directory = connection.exec_driver_sql("SHOW data_directory").scalar_one()
    engine.dispose()
    return directory


def test_fails(postgres_url):
    print("DATA", _data_directory(postgres_url), flush=True)
    assert False


def test_waits(postgres_url, noted):
    engine = sa.create_engine(postgres_url + "/postgres")
    connection = engine.connect()  # a client still connected when the run ends
    print("DATA", _data_directory(postgres_url), flush=True)
    time.sleep(120)
"""


def _gone(root: Path) -> bool:
    """Whether, within 30 s, no process works in ``root`` and ``root`` is removed."""
    return gone(root, lambda: bool(processes_in(root)))


def _inner_pytest(tests: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tests),
            *("-p", "tests.conftest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO)),
            *("-p", "no:cacheprovider", "-s", "-q", *args),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _data_directory_from(process: subprocess.Popen[str]) -> Path:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("DATA "):
            return Path(line.split()[1])
    raise AssertionError("the inner run named no data directory:\n" + "".join(seen))


def test_stop_ends_every_process_of_the_server_and_removes_its_directory() -> None:
    server = PostgresServer.start()
    engine = sa.create_engine(f"{server.url}/postgres")
    connection = engine.connect()  # still connected: a fast shutdown does not wait for it
    assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    assert processes_in(server.root)
    server.stop()
    assert not server.root.exists()
    assert processes_in(server.root) == []
    connection.invalidate()  # closed by the server already
    engine.dispose()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_the_server_goes_when_its_owner_is_killed(signum: int) -> None:
    assert_the_server_goes_with_its_owner(
        "devstack.postgres.PostgresServer", signum, lambda root, _port: bool(processes_in(root))
    )


def test_a_test_run_stopped_by_a_failure_stops_its_server(tmp_path: Path) -> None:
    tests = tmp_path / "test_inner.py"
    tests.write_text(INNER_TESTS)
    run = _inner_pytest(tests, "-x")
    try:
        root = _data_directory_from(run).parent
        assert run.wait(120) == 1  # test_fails failed, -x stopped the run
        assert _gone(root)
    finally:
        end(run)


def test_a_test_run_ended_by_sigterm_tears_down_and_stops_its_server(tmp_path: Path) -> None:
    tests = tmp_path / "test_inner.py"
    tests.write_text(INNER_TESTS)
    run = _inner_pytest(tests, "-k", "waits")
    try:
        root = _data_directory_from(run).parent
        assert processes_in(root)
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 2  # pytest's exit code for an interrupted run
        assert (tmp_path / "torn-down").read_text() == "yes"
        assert _gone(root)
    finally:
        end(run)
