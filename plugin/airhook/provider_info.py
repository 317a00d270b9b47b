"""Provider metadata for Airflow (read through the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from airhook import __version__
from airhook.config import provider_config


def get_provider_info() -> dict[str, Any]:
    """Return airhook's provider info, in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-airhook",
        "name": "airhook",
        "description": (
            "Webhooks for Apache Airflow 3: verified inbound platform events as asset events "
            "and DAG runs; signed, templated, reliable outbound calls."
        ),
        "versions": [__version__],
        "config": provider_config(),
    }
