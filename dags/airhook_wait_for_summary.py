"""Wait for one chat's summary: trigger with ``{"chat_id": "cht_8f2c1a"}``.

The sensor defers to the triggerer, which reads the airhook store until the Caleida
``insight.summary`` for that chat arrives (or the timeout passes).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airhook.sensors.event import WebhookEventSensor


@dag(schedule=None, catchup=False, tags=["airhook", "caleida"], params={"chat_id": "cht_8f2c1a"})
def airhook_wait_for_summary() -> None:
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
        text = event["payload"]["data"]["summary"]
        print(f"summary of {event['payload']['data']['chat_id']}: {text}")
        return text

    show(summary.output)


airhook_wait_for_summary()
