"""A throw-away server on 127.0.0.1 that never outlives its owner: the guard process pattern.

A server left behind outlives every later run: a ``postgres`` or ``redis-server`` on a port nobody
knows, its directory in ``/dev/shm`` or the temp folder. A ``finally`` in the owner is not enough,
since SIGTERM, SIGHUP or ``kill -9`` end a process without running it. So the server is not the
owner's child but a guard's::

    owner (pytest) --pipe--> guard (python devstack/<server>.py) --child--> server

The guard holds the read end of a pipe (its stdin) whose write end only the owner holds. However
the owner ends, the kernel closes that end; the guard then stops the server by its pid (a signal
of the server's choosing, SIGKILL after a grace period) and removes its directory. The guard runs
in a session of its own, so a Ctrl-C meant for the owner's terminal reaches only the owner, and
the server stays in the guard's process group, so a ``kill -9`` of that group leaves no server
either. The guard signals the server itself, never through a wrapper such as ``runuser``
(``devstack/postgres.py`` says what that left behind).

Both sides live here. The owner side, :class:`GuardedServer`, spawns ``python <script> --root=...
--port=... ...``, reads the guard's first line (``ready``, or the error with the server's log
tail), and stops by closing the guard's stdin and waiting for it. The guard side, :class:`Guard`,
runs the pattern; a server's module subclasses it with how to start the server and how to tell
that it answers.

How the script finds this module: ``python devstack/redis.py`` puts ``devstack/`` itself first on
``sys.path``, not the repository, so there this module is the top-level ``_guard``, while an owner
imports ``devstack.redis`` and with it ``devstack._guard``. A server's module therefore imports
it by ``__name__``::

    if __name__ == "__main__":  # the guard: devstack/ is sys.path[0]
        import _guard
    else:
        from devstack import _guard

Importing ``devstack`` from the guard instead (``python -m devstack.redis``, or the repository
on ``sys.path``) would run ``devstack/__init__.py`` and need the project's environment; the guard
needs the standard library only, and so does this module (it imports nothing from ``devstack``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from typing import Self

__all__ = ["READY", "Guard", "GuardedServer", "arguments"]

READY = "ready"


# --- the owner -----------------------------------------------------------------------------------


@dataclass
class GuardedServer:
    """A running server: ``stop()`` ends it and removes ``root``.

    :param root: the server's directory.
    :param port: its TCP port on 127.0.0.1.
    :param guard: the guard process, whose stdin is the owner's end of the pipe.
    """

    #: Seconds ``stop()`` waits for the guard by default: its grace period and some.
    STOP_TIMEOUT: ClassVar[float]

    root: Path
    port: int
    guard: subprocess.Popen[bytes]

    @classmethod
    def _spawn(cls, script: str, name: str, root: Path, port: int, *args: str) -> Self:
        """Run ``script`` as the guard of a server in ``root`` on ``port``; return once it runs.

        :param name: the server's name in the error raised when it does not start, with the
            guard's detail (the error, the server's log tail).
        :param args: the guard's further arguments.
        """
        guard = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                str(Path(script).resolve()),
                f"--root={root}",
                f"--port={port}",
                *args,
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
            raise RuntimeError(f"{name} did not start:\n{detail}")
        guard.stdout.close()
        return cls(root=root, port=port, guard=guard)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server and remove its directory; return once both are done.

        :param timeout: seconds to wait for the guard (default: ``STOP_TIMEOUT``).
        """
        if self.guard.stdin is not None and not self.guard.stdin.closed:
            self.guard.stdin.close()
        self.guard.wait(self.STOP_TIMEOUT if timeout is None else timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the guard (run as a script: it needs the standard library only) ----------------------------


def arguments(description: str, timeout: float) -> argparse.ArgumentParser:
    """The guard's command line: ``--root``, ``--port`` and ``--timeout`` (default ``timeout``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=timeout)
    return parser


def _say(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the owner is gone, or stdout is already closed
        pass


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class Guard:
    """The guard of one server in ``root`` on 127.0.0.1:``port``; ``run()`` is its life.

    A subclass sets the class attributes and implements ``start_server`` and ``answers``.
    """

    #: The server's program, in the guard's errors.
    NAME: ClassVar[str]
    #: What the server has not done when it times out: "<NAME> did not <this> in time".
    READY_MEANS: ClassVar[str] = "become ready"
    #: The server's log file in ``root``; its tail goes into the guard's errors.
    LOG_NAME: ClassVar[str]
    #: The signal that stops the server.
    STOP_SIGNAL: ClassVar[int] = signal.SIGTERM
    #: Seconds the server has to stop after ``STOP_SIGNAL`` before the guard kills it.
    STOP_GRACE_SECONDS: ClassVar[float]

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.log = root / self.LOG_NAME

    def start_server(self, deadline: float) -> subprocess.Popen[bytes]:
        """Start the server (``root`` exists, empty); ``deadline`` is for any preparation."""
        raise NotImplementedError

    def answers(self) -> bool:
        """Whether the server is ready for clients."""
        raise NotImplementedError

    def stop_server(self, server: subprocess.Popen[bytes]) -> None:
        """Stop the server: ``STOP_SIGNAL``, SIGKILL after ``STOP_GRACE_SECONDS``."""
        if server.poll() is None:
            server.send_signal(self.STOP_SIGNAL)
            try:
                server.wait(self.STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    server.kill()
                server.wait()

    def _wait_ready(self, server: subprocess.Popen[bytes], deadline: float) -> None:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{self.NAME} exited with {server.returncode}")
            if self.answers():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.NAME} did not {self.READY_MEANS} in time")
            time.sleep(0.05)

    def run(self, timeout: float) -> int:
        """Start the server, say ``ready``, wait for the owner's end of stdin, stop, clean up.

        :param timeout: seconds for the preparation and the start together.
        :returns: the guard's exit status (1 when the server did not start).
        """
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, _exit_on_signal)
        deadline = time.monotonic() + timeout
        server: subprocess.Popen[bytes] | None = None
        try:
            self.root.mkdir(mode=0o700)
            server = self.start_server(deadline)
            self._wait_ready(server, deadline)
            _say(READY)
            sys.stdout.close()
            sys.stdin.buffer.read()  # returns when the owner's end closes, however the owner ends
            return 0
        except Exception as error:
            stderr = getattr(error, "stderr", None)  # a preparation command's, when it failed
            detail = stderr.decode(errors="replace") if isinstance(stderr, bytes) else ""
            if self.log.exists():
                detail += self.log.read_text(errors="replace")[-4000:]
            _say(f"{type(error).__name__}: {error}\n{detail}")
            return 1
        finally:
            if server is not None:
                self.stop_server(server)
            shutil.rmtree(self.root, ignore_errors=True)
