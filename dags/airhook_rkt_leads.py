"""Push RKT chatbot leads to the CRM as soon as they are captured."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on("rkt", "lead.captured"), catchup=False, tags=["airhook", "rkt"])
def airhook_rkt_leads() -> None:
    @task
    def upsert_leads(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        leads = []
        for events in triggering_asset_events.values():
            for asset_event in events:
                payload = asset_event.extra["payload"]
                leads.append({"chatbot": payload["chatbotId"], **payload["data"]})
        print(f"upserting {len(leads)} leads")
        return leads

    upsert_leads()


airhook_rkt_leads()
