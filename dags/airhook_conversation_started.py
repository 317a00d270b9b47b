"""One pipeline for every platform: a conversation started, wherever it started.

Scheduled on the canonical kind ``conversation.started``: Caleida ``chat``, CCAI
``chat.created``, eeV.ai ``conversation.created`` and RKT ``session.created`` all run it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on_kind("conversation.started"), catchup=False, tags=["airhook"])
def airhook_conversation_started() -> None:
    @task
    def record_conversation(*, triggering_asset_events: Any = None) -> list[str]:
        seen = []
        for events in triggering_asset_events.values():
            for asset_event in events:
                extra = asset_event.extra
                seen.append(f"{extra['source']}:{extra['event']}:{extra['airhook_event_id']}")
        print("conversations started:", seen)
        return seen

    record_conversation()


airhook_conversation_started()
