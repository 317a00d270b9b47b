"""A throw-away Redis server on 127.0.0.1 (a Celery broker) that never outlives its owner.

Debian's ``redis-server``, on a free port, bound to 127.0.0.1 only, nothing saved to disk. The
server is not the owner's child but a guard's (``devstack/_guard.py`` says why at length)::

    owner (pytest) --pipe--> guard (python devstack/redis.py) --child--> redis-server

However the owner ends (``kill -9`` included), the guard stops the server by its pid (SIGTERM,
SIGKILL after a grace period) and removes its directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

if __name__ == "__main__":  # the guard: devstack/ is sys.path[0] (devstack/_guard.py says why)
    import _guard
else:
    from devstack import _guard

__all__ = ["RedisServer", "redis_binary"]

#: A Redis server with nothing to save stops within milliseconds; past this the guard kills it.
STOP_GRACE_SECONDS = 10.0


def redis_binary() -> str | None:
    """The ``redis-server`` on PATH (Debian's package puts it in /usr/bin), or None."""
    return shutil.which("redis-server")


class RedisServer(_guard.GuardedServer):
    """A running server: ``url`` (database 0) to reach it, ``stop()`` to end it.

    ``root`` is the server's working directory and holds its log (the other fields: as
    ``GuardedServer`` says).
    """

    STOP_TIMEOUT = STOP_GRACE_SECONDS + 20

    @property
    def url(self) -> str:
        """The server's URL, database 0 (what ``[celery] broker_url`` takes)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, *, base: Path | None = None, timeout: float = 30) -> RedisServer:
        """Start a server in a fresh directory under ``base`` (default: the temp folder)."""
        from devstack import free_port

        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("no redis-server (Debian's package redis-server)")
        return cls._spawn(
            __file__,
            "Redis",
            (base or Path(tempfile.gettempdir())) / f"airhook-redis-{uuid.uuid4().hex[:8]}",
            free_port(),
            f"--redis={binary}",
            f"--timeout={timeout}",
        )


# --- the guard (run as a script: it needs the standard library only) --------------------------


def ping(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class _RedisGuard(_guard.Guard):
    NAME = "redis-server"
    READY_MEANS = "answer PING"
    LOG_NAME = "redis.log"
    STOP_GRACE_SECONDS = STOP_GRACE_SECONDS

    def __init__(self, root: Path, port: int, binary: str) -> None:
        super().__init__(root, port)
        self.binary = binary

    def start_server(self, deadline: float) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--protected-mode",
                "yes",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.log),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
        )

    def answers(self) -> bool:
        return ping(self.port)


def main(argv: list[str] | None = None) -> int:
    """The guard's entry point (``RedisServer.start`` runs it)."""
    parser = _guard.arguments(__doc__.split("\n")[0], timeout=30)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args(argv)
    return _RedisGuard(args.root, args.port, args.redis).run(args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
