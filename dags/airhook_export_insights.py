"""Export Caleida's conversation insights to every subscription of ``insight.*``.

Runs for every ``insight.*`` event the ``caleida`` source receives (summary, topic, key,
conversation, sentiment), and publishes each to all active subscriptions whose patterns match:
a CRM, a data warehouse loader, a Slack channel, each signed with its own secret and, where a
subscription has one, rendered with its own body template. Retries wait in the triggerer; a
subscription that keeps failing is disabled after 10 failed deliveries and its events are kept
for replay. Set subscriptions up with the CLI (see ``docs/subscriptions.md``)::

    airhook subscriptions create warehouse --url https://etl.example.com/hooks/insights \\
        --events 'insight.*'
    airhook subscriptions create slack --url-file slack-url.txt --scheme none \\
        --events insight.summary --template slack.json.j2

The DAG parses, and runs, with no subscription at all: then there is simply nobody to tell.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

import airhook
from airhook.operators.publish import PublishEventOperator


@dag(
    schedule=airhook.on("caleida", "insight.*"),
    catchup=False,
    tags=["airhook", "caleida", "send"],
)
def airhook_export_insights() -> None:
    @task
    def collect(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The run's insight events, in the shape PublishEventOperator takes."""
        events = []
        for asset_events in (triggering_asset_events or {}).values():
            for asset_event in asset_events:
                extra = asset_event.extra
                payload = extra.get("payload")
                if payload is None:  # larger than [airhook] payload_in_extra_max_bytes
                    from airhook.hooks.inbox import AirhookInboxHook

                    payload = AirhookInboxHook().get_event(extra["airhook_event_id"])["payload"]
                # The airhook event id as the key: the same insight is the same delivery, even
                # if a rerun of this DAG run collects the events in another order.
                events.append(
                    {"event": extra["event"], "payload": payload, "key": extra["airhook_event_id"]}
                )
        return events

    PublishEventOperator(
        task_id="export",
        events=collect(),
        platform="caleida",
        fail_on_dead_letter=False,  # a dead letter waits for replay; the run itself succeeded
    )


airhook_export_insights()
