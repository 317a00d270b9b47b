"""airhook's counts reach Airflow's metrics (StatsD here), as Airflow is configured.

In a subprocess with ``[metrics] statsd_on`` pointed at a UDP socket of this test on 127.0.0.1:
the standalone receiver's app factory sets Airflow's metrics up (the API server does it for
itself), and a counted delivery arrives as a StatsD counter.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

_SNIPPET = """
from airhook.receiver.app import create_standalone_app
from airhook.receiver.metrics import ReceiverMetrics

create_standalone_app()
ReceiverMetrics().count("rkt", "accepted")
"""


def test_a_counted_delivery_is_a_statsd_counter(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(60)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(tmp_path),
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(udp.getsockname()[1]),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
                "AIRFLOW__AIRHOOK__DATABASE_URL": f"sqlite:///{tmp_path / 'airhook.db'}",
            }
        )
        result = subprocess.run(
            [sys.executable, "-c", _SNIPPET],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        received: list[str] = []
        # Airflow sends metrics of its own too; the process has ended, so every packet is here.
        udp.settimeout(2)
        with contextlib.suppress(TimeoutError):
            while True:
                received.extend(udp.recv(65536).decode().splitlines())
    assert "airflow.airhook.receiver.accepted:1|c" in received, received
