"""airhook's own database: sources, the inbox, leases (and later subscriptions and deliveries).

Why its own database: tasks and triggers may not touch Airflow's metadata DB, and the receiver
must not write to it per request. This store is reachable from every component: an SQLite file
under ``AIRFLOW_HOME`` by default, PostgreSQL (``[airhook] database_url``) when Airflow is
distributed. It is the only part of airhook that speaks SQL.
"""

from __future__ import annotations

from airhook.store.engine import Store, get_store

__all__ = ["Store", "get_store"]
