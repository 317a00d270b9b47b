"""Insight export: every conversation insight lands in the analytics table, once.

**Runs on** the canonical kinds ``insight.*`` (``airhook.on_kind``): Caleida's
``insight.summary``, ``insight.topic``, ``insight.key``, ``insight.conversation`` and
``insight.sentiment``, and any other platform's event of those kinds, whatever the source is
called. Several events can start one run (the scheduler batches what arrived meanwhile); the
task writes all of them.

**Writes** one row per insight to the table ``insights`` (``airhook_analytics_table.py`` defines
it: the airhook event id, source, platform, kind, conversation, the summary, topics or sentiment,
the event's data as JSON, when it was received).

**Connection** ``airhook_analytics`` (optional): the analytics database as a SQLAlchemy URL, in
the extra ``sqlalchemy_url`` or as the connection's URI::

    export AIRFLOW_CONN_AIRHOOK_ANALYTICS='{"conn_type": "generic",
        "extra": {"sqlalchemy_url": "postgresql+psycopg2://etl:...@db.example.com/analytics"}}'

Without it the table is an SQLite file, ``$AIRFLOW_HOME/analytics.db``.

**Idempotent** on the airhook event id, the table's primary key, written with ``INSERT … ON
CONFLICT DO NOTHING``: a re-delivered event (answered as a duplicate, it starts no run), a
re-dispatched one (``airhook events redispatch``: a new run, the same id) and a re-run of a DAG
run (clear) all leave exactly one row per insight. An event whose payload was too large for the
asset event's extra is read from the airhook store by its id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(
    schedule=airhook.on_kind("insight.*"),
    catchup=False,
    tags=["airhook", "caleida", "analytics"],
    # A database that is briefly away: the writes are idempotent, so trying again is safe.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
)
def airhook_insight_export() -> None:
    @task
    def load_insights(*, triggering_asset_events: Any = None) -> dict[str, Any]:
        """Write the run's insight events to the table; return what was new and what was not."""
        from airhook_analytics_table import analytics_engine, insert_insights, insight_row

        rows: dict[str, dict[str, Any]] = {}
        for asset_events in (triggering_asset_events or {}).values():
            for asset_event in asset_events:
                extra = asset_event.extra
                payload = extra.get("payload")
                if payload is None:  # larger than [airhook] payload_in_extra_max_bytes
                    from airhook.hooks.inbox import AirhookInboxHook

                    payload = AirhookInboxHook().get_event(extra["airhook_event_id"])["payload"]
                row = insight_row(extra, payload)
                rows[row["event_id"]] = row  # one event may reach several assets of this run
        engine = analytics_engine()
        try:
            added = insert_insights(engine, rows.values())
        finally:
            engine.dispose()
        print(f"{len(rows)} insights, {added} new, {len(rows) - added} already in the table")
        return {"insights": sorted(rows), "added": added}

    load_insights()


airhook_insight_export()
