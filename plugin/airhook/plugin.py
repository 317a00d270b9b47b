"""The Airflow plugin, registered through the ``airflow.plugins`` entry point.

Provider info's ``plugins`` key is not read under Airflow's default settings, so the entry point
is what loads it. The receiver app, the management API and the page attach here as they land.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class AirhookPlugin(AirflowPlugin):
    """airhook's plugin: no routes yet beyond what later parts register."""

    name = "airhook"
