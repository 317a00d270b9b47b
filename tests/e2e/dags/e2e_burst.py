"""The burst test's DAG: each run returns the airhook event ids it was triggered by.

Only the ``burst`` source starts it, which only tests/e2e/test_burst.py creates; in the other
e2e stacks it never runs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on("burst", "message.received"), catchup=False, tags=["airhook-e2e"])
def e2e_burst() -> None:
    @task
    def seen(*, triggering_asset_events: Any = None) -> list[str]:
        return [
            asset_event.extra["airhook_event_id"]
            for events in triggering_asset_events.values()
            for asset_event in events
        ]

    seen()


e2e_burst()
