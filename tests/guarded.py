"""What the tests of devstack's guarded servers share (``devstack/_guard.py``): whether a server
is gone, and an owner process to kill."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gone(root: Path, running: Callable[[], bool], timeout: float = 30) -> bool:
    """Whether, within ``timeout``, the server is no longer ``running`` and ``root`` is removed."""
    deadline = time.monotonic() + timeout
    while running() or root.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def end(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` (if it still runs), reap it and close its stdout."""
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def assert_the_server_goes_with_its_owner(
    server: str, signum: int, running: Callable[[Path, int], bool]
) -> None:
    """Start ``server`` (``module.Class``) in an owner process, end it with ``signum``; assert
    that the server ran (``running(root, port)``) and then went, and its directory with it."""
    module, name = server.rsplit(".", 1)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from {module} import {name}; "
            f"s = {name}.start(); print(s.root, s.port, flush=True); time.sleep(120)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        root, port = owner.stdout.readline().split()
        assert running(Path(root), int(port))
        owner.send_signal(signum)
        owner.wait(30)
        assert gone(Path(root), lambda: running(Path(root), int(port)))
    finally:
        end(owner)
