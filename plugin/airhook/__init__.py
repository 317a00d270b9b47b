"""airhook: webhooks for Apache Airflow 3.

The package root imports nothing heavy: the pure core (``airhook.signing``, ``airhook.secrets``,
``airhook.access``, ``airhook.catalog``, ``airhook.errors``) is imported where it is used, and
nothing here imports Airflow.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
