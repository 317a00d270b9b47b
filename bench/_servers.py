"""Start the servers of a bench script on 127.0.0.1, each in its own process group, and stop
exactly them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

from devstack import free_port

__all__ = ["served", "uvicorn_app"]


@contextmanager
def served(
    command: Sequence[str],
    port: int,
    ready_path: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready_status: int | None = None,
    start_seconds: float = 60,
) -> Iterator[tuple[str, int]]:
    """Run ``command`` (a server on 127.0.0.1:``port``) in its own process group, its output in
    ``log_path``. Yield its URL and process id once ``ready_path`` answers (``ready_status``, or
    anything when None); at the end stop that process group, and only it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        list(command),
        env=dict(env) if env is not None else None,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[2]} exited; see {log_path}")
            try:
                answer = requests.get(url + ready_path, timeout=1)
                if ready_status is None or answer.status_code == ready_status:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[2]} did not start; see {log_path}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()


@contextmanager
def uvicorn_app(
    factory: str, ready_path: str, log_path: Path, extra_args: Sequence[str] = ()
) -> Iterator[tuple[str, int]]:
    """Run ``factory`` (``module:function`` in bench/) under uvicorn: 1 worker, no access log.
    Yield its URL and process id once ``ready_path`` answers anything."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--app-dir",
        str(Path(__file__).resolve().parent),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra_args,
    ]
    with served(command, port, ready_path, log_path) as server:
        yield server
