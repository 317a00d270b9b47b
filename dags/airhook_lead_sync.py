"""CRM lead sync: an RKT chatbot lead becomes a CRM contact, updated when its chat session ends.

**Runs on** the canonical kind ``lead.captured`` (``airhook.on_kind``): RKT's ``lead.captured``,
whatever the source is called. Several leads can start one run; each gets its own mapped
``sync_lead`` group:

1. ``upsert_contact``: ``POST /crm/v3/objects/contacts/batch/upsert``, the body rendered from
   airhook's shipped template ``hubspot_contact_upsert.json.j2`` (a contact keyed by e-mail,
   first and last name, lifecycle stage ``lead``), signed as the connection says;
2. ``wait_for_session_end``: the airhook sensor waits, in the triggerer, for the RKT
   ``session.resolved`` of the lead's ``sessionId`` on the same source (one recorded before the
   lead counts too), for up to 6 hours; then it skips, and so does the update;
3. ``update_contact``: ``PATCH /crm/v3/objects/contacts/<email>?idProperty=email`` with the
   session's outcome (``hs_lead_status`` ``CONNECTED``, ``chat_session_id``,
   ``chat_resolved_by``, ``chat_message_count``).

**Connection** ``airhook_crm`` (type ``airhook_webhook``): the CRM API's base URL, its signing
secret and scheme, and a bearer token (see ``docs/operators.md``)::

    export AIRFLOW_CONN_AIRHOOK_CRM='{"conn_type": "airhook_webhook",
        "host": "https://api.hubapi.com", "password": "whsec_...",
        "extra": {"signing": "standard", "token": "pat-..."}}'

**Idempotent**: each call's message id (``webhook-id``, ``Idempotency-Key``) is derived from
the DAG run, the task and the lead's airhook event id, never the try number, so a retry or a
cleared task sends the very same id; and both calls are idempotent in the CRM anyway (an upsert
keyed by e-mail, an update setting the same properties). A re-delivered lead is answered as a
duplicate by the receiver and starts no run.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import dag, task, task_group

import airhook
from airhook.operators.webhook import WebhookOperator
from airhook.sensors.event import WebhookEventSensor

CRM_CONN_ID = "airhook_crm"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
#: How long a lead's chat session may take to end before the update is given up.
SESSION_TIMEOUT_SECONDS = 6 * 3600


@dag(
    schedule=airhook.on_kind("lead.captured"),
    catchup=False,
    tags=["airhook", "rkt", "crm"],
    doc_md=__doc__,
)
def airhook_lead_sync() -> None:
    @task
    def leads(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One entry per lead of the run: what its group's three tasks need."""
        found: dict[str, dict[str, Any]] = {}
        for asset_events in (triggering_asset_events or {}).values():
            for asset_event in asset_events:
                extra = asset_event.extra
                event_id = extra["airhook_event_id"]
                payload = extra.get("payload")
                if payload is None:  # larger than [airhook] payload_in_extra_max_bytes
                    from airhook.hooks.inbox import AirhookInboxHook

                    payload = AirhookInboxHook().get_event(event_id)["payload"]
                found[event_id] = {
                    "event": payload,
                    "platform": extra.get("profile"),
                    "source": extra["source"],
                    "event_key": event_id,
                    "session": {"data.sessionId": payload["data"]["sessionId"]},
                }
        print(f"{len(found)} leads: {sorted(found)}")
        return list(found.values())

    @task(multiple_outputs=True)
    def session_outcome(event: dict[str, Any], ended: dict[str, Any]) -> dict[str, Any]:
        """The update's path and body: the lead's contact, and how its session ended."""
        email = event["data"]["email"]
        data = ended["payload"]["data"]
        return {
            "path": f"/crm/v3/objects/contacts/{quote(email, safe='@')}?idProperty=email",
            "body": {
                "properties": {
                    "hs_lead_status": "CONNECTED",
                    "chat_session_id": data["sessionId"],
                    "chat_resolved_by": data.get("resolvedBy"),
                    "chat_message_count": data.get("messageCount"),
                }
            },
        }

    @task_group
    def sync_lead(
        event: dict[str, Any],
        platform: str | None,
        source: str,
        event_key: str,
        session: dict[str, str],
    ) -> None:
        upsert = WebhookOperator(
            task_id="upsert_contact",
            webhook_conn_id=CRM_CONN_ID,
            url=UPSERT_PATH,
            body_template="hubspot_contact_upsert.json.j2",
            template_vars={
                "event": event,
                "platform": platform,
                "source": source,
                "kind": "lead.captured",
            },
            event_key=event_key,
        )
        ended = WebhookEventSensor(
            task_id="wait_for_session_end",
            source=source,
            events="session.resolved",
            match=session,
            poll_interval=2,
            timeout=SESSION_TIMEOUT_SECONDS,
            soft_fail=True,
        )
        outcome = session_outcome(event, ended.output)
        WebhookOperator(
            task_id="update_contact",
            webhook_conn_id=CRM_CONN_ID,
            method="PATCH",
            url=outcome["path"],
            body=outcome["body"],
            event_key=event_key,
        )
        upsert >> ended

    sync_lead.expand_kwargs(leads())


airhook_lead_sync()
