"""Run a snippet in a fresh process with Airflow's StatsD metrics on, and collect what it sent."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def statsd_lines(snippet: str, home: Path, extra_env: Mapping[str, str] = {}) -> list[str]:
    """Run ``snippet`` with ``python -c`` under a fresh ``AIRFLOW_HOME`` whose metrics go to a
    UDP socket on 127.0.0.1 (prefix ``airflow``); return every StatsD line received.

    Airflow's metrics configuration is read once per process, hence the subprocess. The airhook
    store is an SQLite file under ``home``. Airflow sends metrics of its own too; the process has
    ended before the socket is read, so every packet is there.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(udp.getsockname()[1]),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
                "AIRFLOW__AIRHOOK__DATABASE_URL": f"sqlite:///{home / 'airhook.db'}",
                **extra_env,
            }
        )
        result = subprocess.run(
            [sys.executable, "-c", snippet],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        received: list[str] = []
        udp.settimeout(2)
        with contextlib.suppress(TimeoutError):
            while True:
                received.extend(udp.recv(65536).decode().splitlines())
    return received


class StatsdListener:
    """A UDP socket on 127.0.0.1 collecting StatsD lines in a thread, for long-running
    processes (an Airflow stack) pointed at it through ``env``."""

    def __init__(self) -> None:
        import threading

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-listener", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        """Airflow's settings that send its metrics here, with the prefix ``airflow``."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self._socket.getsockname()[1]),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                packet = self._socket.recv(65536)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._lines.extend(packet.decode(errors="replace").splitlines())

    def lines(self) -> list[str]:
        """Every line received so far."""
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._socket.close()
