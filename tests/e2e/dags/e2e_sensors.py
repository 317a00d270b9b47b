"""Sensors that can only time out (no such chat): one fails, one is skipped (soft_fail)."""

from __future__ import annotations

from airflow.sdk import dag

from airhook.sensors.event import WebhookEventSensor


@dag(schedule=None, catchup=False, tags=["airhook-e2e"])
def e2e_sensor_timeout() -> None:
    WebhookEventSensor(
        task_id="wait",
        source="caleida",
        events="insight.summary",
        match={"data.chat_id": "never"},
        poll_interval=1,
        timeout=20,
    )


@dag(schedule=None, catchup=False, tags=["airhook-e2e"])
def e2e_sensor_soft_fail() -> None:
    WebhookEventSensor(
        task_id="wait",
        source="caleida",
        events="insight.summary",
        match={"data.chat_id": "never"},
        poll_interval=1,
        timeout=20,
        soft_fail=True,
    )


e2e_sensor_timeout()
e2e_sensor_soft_fail()
