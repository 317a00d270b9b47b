"""Export Caleida's conversation insights as they are generated.

Runs for every ``insight.*`` event of the ``caleida`` source (summary, topic, key, conversation,
sentiment). Several events can land in one run: the task walks all of them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on("caleida", "insight.*"), catchup=False, tags=["airhook", "caleida"])
def airhook_caleida_insights() -> None:
    @task
    def export_insights(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        rows = []
        for events in triggering_asset_events.values():
            for asset_event in events:
                extra = asset_event.extra
                data = extra["payload"]["data"]
                rows.append(
                    {
                        "airhook_event_id": extra["airhook_event_id"],
                        "event": extra["event"],
                        "chat_id": data["chat_id"],
                        "insight_id": data["insight_id"],
                    }
                )
        print(f"exporting {len(rows)} insights: {rows}")
        return rows

    export_insights()


airhook_caleida_insights()
