"""Post a Caleida conversation summary to a Slack-style incoming webhook, signed and retried.

The body is airhook's shipped ``slack.json.j2`` rendered in the sandbox; the call goes through
the ``airhook_slack`` connection, which holds the URL and the signing secret (Standard Webhooks
here, so a receiver with ``standardwebhooks`` or ``svix`` verifies it unchanged)::

    export AIRFLOW_CONN_AIRHOOK_SLACK='{"conn_type": "airhook_webhook",
        "host": "https://hooks.example.com/services/T000/B000",
        "password": "whsec_...", "extra": {"signing": "standard"}}'
    airflow dags trigger airhook_send_insights --conf '{"event": {...an insight.summary...}}'

Without ``conf`` it posts Caleida's sample summary. The message id is derived from the event's id,
so a retried task never posts the same summary as a new message. The DAG parses without the
connection; only running the task needs it. To post every summary as it arrives, schedule on the
receiver's asset instead: ``schedule=airhook.on("caleida", "insight.summary")`` and read the
event from ``triggering_asset_events`` (see ``docs/operators.md``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airhook.operators.webhook import WebhookOperator

#: Caleida's documented sample, so that a manual run without conf has something to post.
SAMPLE_SUMMARY = {
    "id": "evt_c41e_insight_summary",
    "event": "insight.summary",
    "webhook": "airflow-prod",
    "created_at": "2026-03-26T15:41:11Z",
    "data": {
        "insight_id": "ins_sum_77a1",
        "chat_id": "cht_8f2c1a",
        "summary": "The customer was billed for the Pro plan instead of Starter in March; the "
        "assistant opened a billing ticket and promised a refund within 5 days.",
        "generated_at": "2026-03-26T15:41:10Z",
        "model": "caleida-insights-2",
    },
}


@dag(
    schedule=None,
    catchup=False,
    tags=["airhook", "caleida", "send"],
    params={"event": Param(SAMPLE_SUMMARY, type="object", description="a Caleida insight.summary")},
)
def airhook_send_insights() -> None:
    @task(multiple_outputs=True)
    def pick_summary(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check the event is a valid Caleida summary; hand it and its id on."""
        from airhook.core.catalog import load_catalog

        event = (params or {})["event"]
        load_catalog().event("caleida", "insight.summary").validate(event)
        return {"event": event, "event_key": event["id"]}

    picked = pick_summary()
    WebhookOperator(
        task_id="post_to_slack",
        webhook_conn_id="airhook_slack",
        body_template="slack.json.j2",
        template_vars={
            "event": picked["event"],
            "platform": "caleida",
            "kind": "insight.summary",
            "title": "Caleida: conversation summary",
        },
        event_key=picked["event_key"],
    )


airhook_send_insights()
