"""Escalation alert: a conversation handed to a human posts one message to the team's chat.

**Runs on** one canonical kind, ``conversation.escalated`` (``airhook.on_kind``), which
gathers every platform's escalations and hand-offs to a human: CCAI Platform's
``chat.escalated``, eeV.ai's ``conversation.escalated`` and RKT's ``handoff.escalated``,
whatever the sources are called. Several escalations can start one run; each is one mapped
``post_alert`` task.

**Sends** each as a Slack incoming-webhook message, rendered from airhook's shipped template
``slack.json.j2`` (a header "<platform> escalation", the reason as the headline, the event's
other fields, its kind, id and time), through ``WebhookOperator``.

**Connection** ``airhook_chat`` (type ``airhook_webhook``): the incoming webhook's URL, which is
its credential, and, where the receiving end checks one, a signing scheme and secret::

    export AIRFLOW_CONN_AIRHOOK_CHAT='{"conn_type": "airhook_webhook",
        "host": "https://hooks.slack.com/services/T000/B000/XXXX"}'

**Idempotent**: a re-delivered escalation is answered as a duplicate by the receiver and starts
no run, so each escalation is alerted once. Each message's id (``webhook-id``,
``Idempotency-Key``) is derived from the DAG run, the task and the escalation's airhook event
id, never the try number: a retry after an answer that never came sends the same id, which a
receiver that deduplicates drops (Slack itself does not deduplicate: clearing a successful run
posts again).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook
from airhook.operators.webhook import WebhookOperator

CHAT_CONN_ID = "airhook_chat"


@dag(
    schedule=airhook.on_kind("conversation.escalated"),
    catchup=False,
    tags=["airhook", "ccai", "eev", "rkt", "alert"],
    doc_md=__doc__,
)
def airhook_escalation_alert() -> None:
    @task
    def escalations(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One ``post_alert`` per escalation of the run: its template variables and key."""
        found: dict[str, dict[str, Any]] = {}
        for asset_events in (triggering_asset_events or {}).values():
            for asset_event in asset_events:
                extra = asset_event.extra
                event_id = extra["airhook_event_id"]
                payload = extra.get("payload")
                if payload is None:  # larger than [airhook] payload_in_extra_max_bytes
                    from airhook.hooks.inbox import AirhookInboxHook

                    payload = AirhookInboxHook().get_event(event_id)["payload"]
                platform = extra.get("profile") or extra["source"]
                found[event_id] = {
                    "template_vars": {
                        "event": payload,
                        "event_name": extra["event"],
                        "platform": platform,
                        "source": extra["source"],
                        "kind": extra["kind"],
                        "title": f"{platform} escalation",
                    },
                    "event_key": event_id,
                }
        print(f"{len(found)} escalations: {sorted(found)}")
        return list(found.values())

    WebhookOperator.partial(
        task_id="post_alert",
        webhook_conn_id=CHAT_CONN_ID,
        body_template="slack.json.j2",
    ).expand_kwargs(escalations())


airhook_escalation_alert()
