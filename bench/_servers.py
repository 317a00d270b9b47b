"""Start an ASGI app of a bench script under uvicorn, on 127.0.0.1, and stop exactly it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

from airhook.devstack import free_port

__all__ = ["uvicorn_app"]


@contextmanager
def uvicorn_app(
    factory: str, ready_path: str, log_path: Path, extra_args: Sequence[str] = ()
) -> Iterator[tuple[str, int]]:
    """Run ``factory`` (``module:function`` in bench/) under uvicorn: 1 worker, no access log,
    its own process group. Yield its URL and process id once ``ready_path`` answers anything.
    """
    port = free_port()
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
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
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{factory} exited; see {log_path}")
            try:
                requests.get(url + ready_path, timeout=1)  # any answer means it is up
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url, process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()
