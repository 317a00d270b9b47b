"""A throw-away Redis server on 127.0.0.1 (a Celery broker) that never outlives its owner.

Debian's ``redis-server``, on a free port, bound to 127.0.0.1 only, nothing saved to disk. As
with ``devstack/postgres.py`` (whose docstring says why at length) the server is not the owner's
child but a guard's::

    owner (pytest) --pipe--> guard (python devstack/redis.py) --child--> redis-server

The guard holds the read end of a pipe whose write end only the owner holds; however the owner
ends (``kill -9`` included), the kernel closes that end and the guard stops the server by its pid
(SIGTERM, SIGKILL after a grace period) and removes its directory. The guard runs in a session of
its own and redis-server in the guard's process group.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedisServer", "redis_binary"]

READY = "ready"
#: A Redis server with nothing to save stops within milliseconds; past this the guard kills it.
STOP_GRACE_SECONDS = 10.0


def redis_binary() -> str | None:
    """The ``redis-server`` on PATH (Debian's package puts it in /usr/bin), or None."""
    return shutil.which("redis-server")


@dataclass
class RedisServer:
    """A running server: ``url`` (database 0) to reach it, ``stop()`` to end it.

    :param root: the server's directory (its working directory and log).
    :param port: its TCP port on 127.0.0.1.
    :param guard: the guard process, whose stdin is the owner's end of the pipe.
    """

    root: Path
    port: int
    guard: subprocess.Popen[bytes]

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
        root = (base or Path(tempfile.gettempdir())) / f"airhook-redis-{uuid.uuid4().hex[:8]}"
        port = free_port()
        guard = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                str(Path(__file__).resolve()),
                f"--root={root}",
                f"--port={port}",
                f"--redis={binary}",
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
            raise RuntimeError(f"Redis did not start:\n{detail}")
        guard.stdout.close()
        return cls(root=root, port=port, guard=guard)

    def stop(self, timeout: float = STOP_GRACE_SECONDS + 20) -> None:
        """Stop the server and remove its directory; return once both are done."""
        if self.guard.stdin is not None and not self.guard.stdin.closed:
            self.guard.stdin.close()
        self.guard.wait(timeout)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the guard (run as a script: it needs the standard library only) --------------------------


def ping(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _say(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the owner is gone, or stdout is already closed
        pass


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _guard(root: Path, port: int, binary: str, timeout: float) -> int:
    """Start the server, say ``ready``, wait for the owner's end of stdin, stop, clean up."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    deadline = time.monotonic() + timeout
    server: subprocess.Popen[bytes] | None = None
    log = root / "redis.log"
    try:
        root.mkdir(mode=0o700)
        server = subprocess.Popen(  # noqa: S603
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--protected-mode",
                "yes",
                "--dir",
                str(root),
                "--logfile",
                str(log),
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
            cwd=root,
        )
        while not ping(port):
            if server.poll() is not None:
                raise RuntimeError(f"redis-server exited with {server.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING in time")
            time.sleep(0.05)
        _say(READY)
        sys.stdout.close()
        sys.stdin.buffer.read()  # returns when the owner's end closes, however the owner ends
        return 0
    except Exception as error:
        detail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        _say(f"{type(error).__name__}: {error}\n{detail}")
        return 1
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The guard's entry point (``RedisServer.start`` runs it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args(argv)
    return _guard(args.root, args.port, args.redis, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
