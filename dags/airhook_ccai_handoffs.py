"""Alert the support lead when a CCAI chat is escalated or transferred."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(
    schedule=airhook.on("ccai", ["chat.escalated", "chat.transferred"]),
    catchup=False,
    tags=["airhook", "ccai"],
)
def airhook_ccai_handoffs() -> None:
    @task
    def alert(*, triggering_asset_events: Any = None) -> list[int]:
        chats = [
            e.extra["payload"]["data"]["chat_id"]
            for events in triggering_asset_events.values()
            for e in events
        ]
        print("chats handed off:", chats)
        return chats

    alert()


airhook_ccai_handoffs()
