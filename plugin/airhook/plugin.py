"""The Airflow plugin, registered through the ``airflow.plugins`` entry point.

Provider info's ``plugins`` key is not read under Airflow's default settings, so the entry point
is what loads it. The API server mounts the receiver app at ``/airhook``; Airflow runs the app's
lifespan, which starts the store writer, the source cache and the dispatcher in that process.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airhook.receiver.app import create_app

URL_PREFIX = "/airhook"


class AirhookPlugin(AirflowPlugin):
    """airhook's plugin: the webhook receiver."""

    name = "airhook"
    fastapi_apps = [  # noqa: RUF012 (Airflow reads this class attribute)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "airhook receiver"},
    ]
