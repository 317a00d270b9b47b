"""Mirror eeV.ai ticket changes into the warehouse."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on("eev", "ticket.*"), catchup=False, tags=["airhook", "eev"])
def airhook_eev_tickets() -> None:
    @task
    def load_ticket_changes(*, triggering_asset_events: Any = None) -> list[str]:
        changes = [
            f"{e.extra['event']} {e.extra['payload']['data']['ticket_id']}"
            for events in triggering_asset_events.values()
            for e in events
        ]
        print("ticket changes:", changes)
        return changes

    load_ticket_changes()


airhook_eev_tickets()
