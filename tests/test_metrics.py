"""airhook's counts reach Airflow's metrics (StatsD here), as Airflow is configured.

In a subprocess with ``[metrics] statsd_on`` pointed at a UDP socket of this test on 127.0.0.1:
the standalone receiver's app factory sets Airflow's metrics up (the API server does it for
itself), and a counted delivery arrives as a StatsD counter.
"""

from __future__ import annotations

from pathlib import Path

from tests.statsd import statsd_lines

_SNIPPET = """
from airhook.receiver.app import create_standalone_app
from airhook.receiver.metrics import ReceiverMetrics

create_standalone_app()
ReceiverMetrics().count("rkt", "accepted")
"""


def test_a_counted_delivery_is_a_statsd_counter(tmp_path: Path) -> None:
    received = statsd_lines(_SNIPPET, tmp_path)
    assert "airflow.airhook.receiver.accepted:1|c" in received, received
