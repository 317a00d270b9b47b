"""The receiving side's e2e DAGs: each returns what its run received, for the tests to read.

Not examples (``dags/`` holds those, which do real work): these only hand the payloads of their
runs' events to XCom, so that ``tests/e2e/test_airflow.py`` can check that each platform's events
start the right DAG with the right payload, once.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook
from airhook.sensors.event import WebhookEventSensor


def _events(triggering_asset_events: Any) -> list[Any]:
    return [e for events in (triggering_asset_events or {}).values() for e in events]


@dag(schedule=airhook.on("caleida", "insight.*"), catchup=False, tags=["airhook-e2e"])
def e2e_caleida_insights() -> None:
    @task
    def export_insights(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        return [
            {
                "airhook_event_id": e.extra["airhook_event_id"],
                "event": e.extra["event"],
                "chat_id": e.extra["payload"]["data"]["chat_id"],
                "insight_id": e.extra["payload"]["data"]["insight_id"],
            }
            for e in _events(triggering_asset_events)
        ]

    export_insights()


@dag(schedule=airhook.on("rkt", "lead.captured"), catchup=False, tags=["airhook-e2e"])
def e2e_rkt_leads() -> None:
    @task
    def upsert_leads(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        return [
            {"chatbot": e.extra["payload"]["chatbotId"], **e.extra["payload"]["data"]}
            for e in _events(triggering_asset_events)
        ]

    upsert_leads()


@dag(schedule=airhook.on("eev", "ticket.*"), catchup=False, tags=["airhook-e2e"])
def e2e_eev_tickets() -> None:
    @task
    def load_ticket_changes(*, triggering_asset_events: Any = None) -> list[str]:
        return [
            f"{e.extra['event']} {e.extra['payload']['data']['ticket_id']}"
            for e in _events(triggering_asset_events)
        ]

    load_ticket_changes()


@dag(
    schedule=airhook.on("ccai", ["chat.escalated", "chat.transferred"]),
    catchup=False,
    tags=["airhook-e2e"],
)
def e2e_ccai_handoffs() -> None:
    @task
    def alert(*, triggering_asset_events: Any = None) -> list[int]:
        return [e.extra["payload"]["data"]["chat_id"] for e in _events(triggering_asset_events)]

    alert()


@dag(schedule=airhook.on_kind("conversation.started"), catchup=False, tags=["airhook-e2e"])
def e2e_conversation_started() -> None:
    @task
    def record_conversation(*, triggering_asset_events: Any = None) -> list[str]:
        return [
            f"{e.extra['source']}:{e.extra['event']}:{e.extra['airhook_event_id']}"
            for e in _events(triggering_asset_events)
        ]

    record_conversation()


@dag(schedule=None, catchup=False, tags=["airhook-e2e"], params={"chat_id": "cht_8f2c1a"})
def e2e_wait_for_summary() -> None:
    summary = WebhookEventSensor(
        task_id="wait_for_summary",
        source="caleida",
        events="insight.summary",
        match={"data.chat_id": "{{ params.chat_id }}"},
        poll_interval=1,
        timeout=600,
    )

    @task
    def show(event: dict[str, Any]) -> str:
        return str(event["payload"]["data"]["summary"])

    show(summary.output)


e2e_caleida_insights()
e2e_rkt_leads()
e2e_eev_tickets()
e2e_ccai_handoffs()
e2e_conversation_started()
e2e_wait_for_summary()
