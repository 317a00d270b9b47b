"""The Celery cluster's DAGs (tests/e2e/test_celery.py): both operators and the sensor on workers.

Only the ``celery-rkt`` and ``celery-caleida`` sources start or satisfy them, which only
``test_celery.py`` creates; in the other e2e stacks they never run (the sensor DAGs have no
schedule). Every task reports ``AIRHOOK_E2E_RUNNER``, which only the test's Celery workers have
in their environment: a task that ran anywhere else reports ``None``.

``e2e_celery_leads`` runs on each lead: ``seen`` hands the run's events on, ``publish``
publishes them again (``PublishEventOperator``, one outbound event per inbound event, keyed by
its airhook id) and ``notify`` sends one call listing them (``WebhookOperator``, one message id
per run). Task retries are quick, so a task lost with a killed worker runs again soon.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

import airhook
from airhook.operators.publish import PublishEventOperator
from airhook.operators.webhook import WebhookOperator
from airhook.sensors.event import WebhookEventSensor

RETRIES = {"retries": 4, "retry_delay": timedelta(seconds=2)}


@dag(
    schedule=airhook.on("celery-rkt", "lead.captured"),
    catchup=False,
    tags=["airhook-e2e"],
    default_args=RETRIES,
)
def e2e_celery_leads() -> None:
    @task(multiple_outputs=True)
    def seen(*, triggering_asset_events: Any = None) -> dict[str, Any]:
        events = [
            {
                "event": event.extra["event"],
                "payload": event.extra["payload"],
                "key": event.extra["airhook_event_id"],
            }
            for asset_events in (triggering_asset_events or {}).values()
            for event in asset_events
        ]
        return {
            "runner": os.environ.get("AIRHOOK_E2E_RUNNER"),
            "events": events,
            "ids": [event["key"] for event in events],
        }

    found = seen()
    PublishEventOperator(task_id="publish", events=found["events"], subscriptions=["recorder"])
    WebhookOperator(
        task_id="notify",
        webhook_conn_id="airhook_recorder",
        url="/notify",
        body={"ids": found["ids"], "runner": found["runner"]},
    )


def _waiting(deferrable: bool) -> None:
    summary = WebhookEventSensor(
        task_id="wait",
        source="celery-caleida",
        events="insight.summary",
        match={"data.chat_id": "{{ params.chat_id }}"},
        poll_interval=1,
        timeout=900,
        deferrable=deferrable,
    )

    @task
    def show(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": event["payload"]["data"]["summary"],
            "runner": os.environ.get("AIRHOOK_E2E_RUNNER"),
        }

    show(summary.output)


@dag(schedule=None, catchup=False, tags=["airhook-e2e"], params={"chat_id": "none"})
def e2e_celery_wait_deferred() -> None:
    _waiting(deferrable=True)


@dag(schedule=None, catchup=False, tags=["airhook-e2e"], params={"chat_id": "none"})
def e2e_celery_wait_poking() -> None:
    _waiting(deferrable=False)


e2e_celery_leads()
e2e_celery_wait_deferred()
e2e_celery_wait_poking()
