"""A throw-away PostgreSQL server on 127.0.0.1 that never outlives its owner.

The server is not the owner's child but a guard's (``devstack/_guard.py`` says why at length)::

    owner (pytest) --pipe--> guard (python devstack/postgres.py) --child--> postgres

However the owner ends, the guard stops the server with a fast shutdown (SIGINT: clients
disconnected, shared memory released; SIGKILL after a grace period), waits for the postmaster's
children, and removes its directory. The guard signals the postmaster itself: through
``runuser``, SIGTERM meant a smart shutdown that waits for every client, and ``runuser`` killed
the postmaster 2 s later, leaving its shared memory segments in ``/dev/shm``.

As root, initdb and postgres run as the ``postgres`` user (they refuse to run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # the guard: devstack/ is sys.path[0] (devstack/_guard.py says why)
    import _guard
else:
    from devstack import _guard

__all__ = ["PostgresServer", "postgres_binaries", "processes_in"]

DATABASE_USER = "airhook"
# A fast shutdown of a test server takes well under a second; past this the guard kills it.
STOP_GRACE_SECONDS = 30.0


def postgres_binaries() -> tuple[str, str] | None:
    """``(initdb, postgres)``: from PATH, else the newest ``/usr/lib/postgresql/*/bin``."""
    found = []
    for name in ("initdb", "postgres"):
        path = shutil.which(name)
        if path is None:
            candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
            path = str(candidates[0]) if candidates else None
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def processes_in(directory: Path) -> list[int]:
    """The ids of the processes whose working directory is ``directory`` or below it.

    Every process of a PostgreSQL server works in its data directory, so this finds all of them,
    the postmaster's children included, and nothing else (Linux; empty where /proc is missing).
    """
    prefix = str(directory.resolve())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, a zombie, or another user's process
            continue
        if cwd == prefix or cwd.startswith(prefix + os.sep):
            found.append(int(entry.name))
    return found


class PostgresServer(_guard.GuardedServer):
    """A running server: ``url`` to reach it, ``stop()`` to end it and remove ``root``.

    ``root`` holds the data directory, the socket and the log (the other fields: as
    ``GuardedServer`` says).
    """

    STOP_TIMEOUT = STOP_GRACE_SECONDS + 30

    @property
    def url(self) -> str:
        """The server's SQLAlchemy URL, without a database name."""
        return f"postgresql+psycopg2://{DATABASE_USER}@127.0.0.1:{self.port}"

    @classmethod
    def start(cls, *, base: Path | None = None, timeout: float = 120) -> PostgresServer:
        """Create a cluster in a fresh directory under ``base`` and start a server on it.

        :param base: where the directory goes (default: ``/dev/shm`` where there is one: initdb,
            CREATE DATABASE and the clean-up are several times faster there than on a disk, and
            a test server needs no durability).
        :param timeout: seconds for initdb and the start together.
        """
        from devstack import free_port

        binaries = postgres_binaries()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, postgres)")
        if base is None:
            shm = Path("/dev/shm")  # noqa: S108 (the guard's mkdir fails on an existing name)
            base = shm if shm.is_dir() else Path(tempfile.gettempdir())
        return cls._spawn(
            __file__,
            "PostgreSQL",
            base / f"airhook-pg-{uuid.uuid4().hex[:8]}",
            free_port(),
            f"--initdb={binaries[0]}",
            f"--postgres={binaries[1]}",
            f"--timeout={timeout}",
        )


# --- the guard (run as a script: it needs the standard library only) --------------------------


def _as_postgres_user() -> dict[str, Any]:
    """Popen options that run initdb and postgres as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


class _PostgresGuard(_guard.Guard):
    NAME = "postgres"
    LOG_NAME = "postgres.log"
    STOP_SIGNAL = signal.SIGINT  # fast shutdown: disconnects clients, then exits
    STOP_GRACE_SECONDS = STOP_GRACE_SECONDS

    def __init__(self, root: Path, port: int, initdb: str, postgres: str) -> None:
        super().__init__(root, port)
        self.initdb = initdb
        self.postgres = postgres
        self.data = root / "data"

    def start_server(self, deadline: float) -> subprocess.Popen[bytes]:
        as_postgres = _as_postgres_user()
        if as_postgres:
            os.chown(self.root, as_postgres["user"], as_postgres["group"])
        subprocess.run(  # noqa: S603
            [self.initdb, "-D", str(self.data), "-U", DATABASE_USER, "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=self.root,
            timeout=max(1.0, deadline - time.monotonic()),
            **as_postgres,
        )
        with self.log.open("wb") as log_file:
            return subprocess.Popen(  # noqa: S603
                [
                    self.postgres,
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "fsync=on",
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=self.root,
                **as_postgres,
            )

    def answers(self) -> bool:
        # postmaster.pid's 8th line is the server's status, "ready" once it accepts connections
        # (what pg_ctl -w waits for).
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def stop_server(self, server: subprocess.Popen[bytes]) -> None:
        super().stop_server(server)
        # The postmaster's children leave with it; none may be left when the directory goes.
        deadline = time.monotonic() + 10
        while processes_in(self.root) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in processes_in(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """The guard's entry point (``PostgresServer.start`` runs it)."""
    parser = _guard.arguments(__doc__.split("\n")[0], timeout=120)
    parser.add_argument("--initdb", required=True)
    parser.add_argument("--postgres", required=True)
    args = parser.parse_args(argv)
    return _PostgresGuard(args.root, args.port, args.initdb, args.postgres).run(args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
