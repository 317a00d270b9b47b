"""The browser test's DAG: runs on every event of the ``page-rkt`` source and publishes it again.

Only ``tests/e2e/test_page.py`` creates that source (through the page); it starts paused, and
the test unpauses it through Airflow's REST API. Each run hands its triggering events to
``PublishEventOperator``, so a subscription the page added gets a delivery the page then shows.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook
from airhook.operators.publish import PublishEventOperator


@dag(
    schedule=airhook.on("page-rkt"),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["airhook-e2e"],
)
def e2e_page() -> None:
    @task
    def received(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        events = []
        for asset_events in triggering_asset_events.values():
            for asset_event in asset_events:
                extra = asset_event.extra
                events.append(
                    {
                        "event": extra["event"],
                        "payload": extra["payload"],
                        "key": extra["airhook_event_id"],
                    }
                )
        # The source's asset and its event's asset may both be in one run: publish each once.
        return list({event["key"]: event for event in events}.values())

    PublishEventOperator(task_id="publish", events=received(), min_defer_seconds=30)


e2e_page()
