"""Insight digest: once a day, the day's conversation summaries go to every subscriber.

**Runs** ``@daily`` (at midnight UTC, for the day that just ended), and by hand. It reads the
``insight.summary`` rows of the analytics table that ``airhook_insight_export`` fills, and
publishes one ``insight.digest`` event holding them, with ``PublishEventOperator``, to every
active subscription whose patterns match (``insight.digest``, ``insight.*``, ``*``), each signed
with its own secret, retried from the triggerer. A day without summaries publishes nothing.

The window: the param ``day`` (``{"day": "2026-03-26"}``, that UTC day) when given; otherwise
the 24 hours up to the run's ``run_after``: midnight to midnight for a scheduled run, the last
24 hours for a run started by hand.

**Connection** ``airhook_analytics`` (optional, as for the export: without it the table is
``$AIRFLOW_HOME/analytics.db``). Subscriptions are set up with the CLI (``docs/subscriptions.md``)::

    airhook subscriptions create digest --url https://reports.example.com/hooks/digest \\
        --events insight.digest --allow-unknown-events

The payload::

    {"type": "insight.digest", "since": "…", "until": "…", "count": 2,
     "summaries": [{"event_id", "source", "platform", "conversation_id", "insight_id",
                    "summary", "received_at"}, …]}

**Idempotent**: the delivery ids derive from the DAG run, the task and the window, never the try
number; publishing again from the same run (a retry, a cleared task) finds the deliveries in
airhook's outbox and sends nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Param, dag, task

from airhook.operators.publish import PublishEventOperator

EVENT = "insight.digest"


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["airhook", "analytics", "send"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="a UTC day (YYYY-MM-DD); default: the 24 hours up to the run",
        )
    },
    doc_md=__doc__,
)
def airhook_insight_digest() -> None:
    @task
    def digest(params: dict[str, Any] | None = None, dag_run: Any = None) -> list[dict[str, Any]]:
        """The digest event of the window (none when it holds no summary)."""
        from airhook_analytics_table import analytics_engine, summaries_between

        day = (params or {}).get("day")
        if day:
            since = datetime.fromisoformat(str(day)).replace(tzinfo=timezone.utc)
            until = since + timedelta(days=1)
        else:
            until = dag_run.run_after.astimezone(timezone.utc)
            since = until - timedelta(days=1)
        engine = analytics_engine()
        try:
            summaries = summaries_between(engine, since, until)
        finally:
            engine.dispose()
        print(f"{len(summaries)} summaries from {since.isoformat()} to {until.isoformat()}")
        if not summaries:
            return []
        payload = {
            "type": EVENT,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "count": len(summaries),
            "summaries": summaries,
        }
        key = f"{since.isoformat()}/{until.isoformat()}"
        return [{"event": EVENT, "payload": payload, "key": key}]

    PublishEventOperator(task_id="publish", events=digest(), fail_on_dead_letter=False)


airhook_insight_digest()
