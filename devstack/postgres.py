"""A throw-away PostgreSQL server on 127.0.0.1 that never outlives its owner.

A server left behind outlives every later run: a ``postgres`` on a port nobody knows, its data
directory in ``/dev/shm``. A ``finally`` in the owner is not enough, since SIGTERM, SIGHUP or
``kill -9`` end a process without running it. So the server is not the owner's child but a
guard's::

    owner (pytest) --pipe--> guard (python devstack/postgres.py) --child--> postgres

The guard holds the read end of a pipe whose write end only the owner holds. However the owner
ends, the kernel closes that end; the guard then stops the server with a fast shutdown (clients
disconnected, shared memory released; SIGKILL after a grace period) and removes its directory.
The guard runs in a session of its own, so a Ctrl-C meant for the owner's terminal reaches only
the owner, and postgres stays in the guard's process group, so a ``kill -9`` of that group leaves
no server either. The guard signals the postmaster itself: through ``runuser``, SIGTERM meant a
smart shutdown that waits for every client, and ``runuser`` killed the postmaster 2 s later,
leaving its shared memory segments in ``/dev/shm``.

As root, initdb and postgres run as the ``postgres`` user (they refuse to run as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "postgres_binaries", "processes_in"]

READY = "ready"
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


@dataclass
class PostgresServer:
    """A running server: ``url`` to reach it, ``stop()`` to end it and remove ``root``.

    :param root: the server's directory (data directory, socket, log).
    :param port: its TCP port on 127.0.0.1.
    :param guard: the guard process, whose stdin is the owner's end of the pipe.
    """

    root: Path
    port: int
    guard: subprocess.Popen[bytes]

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
        root = base / f"airhook-pg-{uuid.uuid4().hex[:8]}"
        port = free_port()
        guard = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                str(Path(__file__).resolve()),
                f"--root={root}",
                f"--port={port}",
                f"--initdb={binaries[0]}",
                f"--postgres={binaries[1]}",
                f"--timeout={timeout}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert guard.stdout is not None  # stdout=PIPE
        answer = guard.stdout.readline().decode(errors="replace").strip()
        if answer != READY:
            detail = answer + "\n" + guard.stdout.read().decode(errors="replace")
            guard.stdout.close()
            cls(root=root, port=port, guard=guard).stop()
            raise RuntimeError(f"PostgreSQL did not start:\n{detail}")
        guard.stdout.close()
        return cls(root=root, port=port, guard=guard)

    def stop(self, timeout: float = STOP_GRACE_SECONDS + 30) -> None:
        """Stop the server and remove its directory; return once both are done."""
        if self.guard.stdin is not None and not self.guard.stdin.closed:
            self.guard.stdin.close()
        self.guard.wait(timeout)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the guard (run as a script: it needs the standard library only) --------------------------


def _as_postgres_user() -> dict[str, Any]:
    """Popen options that run initdb and postgres as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _wait_ready(server: subprocess.Popen[bytes], data: Path, deadline: float) -> None:
    # postmaster.pid's 8th line is the server's status, "ready" once it accepts connections
    # (what pg_ctl -w waits for).
    pid_file = data / "postmaster.pid"
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.returncode}")
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == READY:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("postgres did not become ready in time")
        time.sleep(0.05)


def _stop_server(server: subprocess.Popen[bytes], root: Path) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, then exits
        try:
            server.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # The postmaster's children leave with it; none may be left when the directory goes.
    deadline = time.monotonic() + 10
    while processes_in(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in processes_in(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _say(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the owner is gone, or stdout is already closed
        pass


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _guard(root: Path, port: int, initdb: str, postgres: str, timeout: float) -> int:
    """Start the server, say ``ready``, wait for the owner's end of stdin, stop, clean up."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    deadline = time.monotonic() + timeout
    server: subprocess.Popen[bytes] | None = None
    data = root / "data"
    log = root / "postgres.log"
    try:
        as_postgres = _as_postgres_user()
        root.mkdir(mode=0o700)
        if as_postgres:
            os.chown(root, as_postgres["user"], as_postgres["group"])
        subprocess.run(  # noqa: S603
            [initdb, "-D", str(data), "-U", DATABASE_USER, "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=root,
            timeout=max(1.0, deadline - time.monotonic()),
            **as_postgres,
        )
        with log.open("wb") as log_file:
            server = subprocess.Popen(  # noqa: S603
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
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=root,
                **as_postgres,
            )
        _wait_ready(server, data, deadline)
        _say(READY)
        sys.stdout.close()
        sys.stdin.buffer.read()  # returns when the owner's end closes, however the owner ends
        return 0
    except Exception as error:
        stderr = getattr(error, "stderr", None)  # initdb's, when it failed
        detail = stderr.decode(errors="replace") if isinstance(stderr, bytes) else ""
        if log.exists():
            detail += log.read_text(errors="replace")[-4000:]
        _say(f"{type(error).__name__}: {error}\n{detail}")
        return 1
    finally:
        if server is not None:
            _stop_server(server, root)
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The guard's entry point (``PostgresServer.start`` runs it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--initdb", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    return _guard(args.root, args.port, args.initdb, args.postgres, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
