"""Wait in the triggerer for a matching webhook event in the airhook store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["WebhookEventTrigger"]


class WebhookEventTrigger(BaseTrigger):
    """Fire when an event of ``source`` matching ``events`` and ``match`` is in the inbox.

    Reads the airhook store only (never Airflow's metadata DB), every ``poll_interval`` seconds.
    Yields ``{"status": "success", "event": {...}}``, or ``{"status": "timeout"}`` at
    ``timeout_at``.

    :param source: the source's name.
    :param events: event-name patterns (``*`` allowed).
    :param match: payload conditions, dotted path to value.
    :param received_after: ISO time; only events received at or after it count.
    :param timeout_at: ISO time at which to give up.
    :param fire_not_before: ISO time before which the trigger does not fire, even when a matching
        event is already there. Why: in Airflow 3.3 a trigger that fires within seconds of the
        deferral can race the scheduler's handling of the deferring worker's exit, which then
        marks the resumed task failed (apache/airflow#66374, #67287, #72716).
    :param poll_interval: seconds between looks.
    :param database_url: the store's URL; default ``[airhook] database_url``.
    """

    def __init__(
        self,
        *,
        source: str,
        events: Sequence[str],
        match: Mapping[str, Any] | None = None,
        received_after: str | None = None,
        timeout_at: str | None = None,
        fire_not_before: str | None = None,
        poll_interval: float = 2.0,
        database_url: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.events = list(events)
        self.match = dict(match or {})
        self.received_after = received_after
        self.timeout_at = timeout_at
        self.fire_not_before = fire_not_before
        self.poll_interval = poll_interval
        self.database_url = database_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and every constructor argument."""
        return (
            "airhook.triggers.event.WebhookEventTrigger",
            {
                "source": self.source,
                "events": self.events,
                "match": self.match,
                "received_after": self.received_after,
                "timeout_at": self.timeout_at,
                "fire_not_before": self.fire_not_before,
                "poll_interval": self.poll_interval,
                "database_url": self.database_url,
            },
        )

    async def _settle(self) -> None:
        """Wait until ``fire_not_before``, if it is still ahead."""
        if self.fire_not_before:
            ahead = datetime.fromisoformat(self.fire_not_before) - datetime.now(timezone.utc)
            if ahead.total_seconds() > 0:
                await asyncio.sleep(ahead.total_seconds())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the store until a matching event or the timeout."""
        from airhook.hooks.inbox import AirhookInboxHook

        hook = AirhookInboxHook(self.database_url)
        since = datetime.fromisoformat(self.received_after) if self.received_after else None
        deadline = datetime.fromisoformat(self.timeout_at) if self.timeout_at else None
        position = 0
        while True:
            found, position = await asyncio.to_thread(
                hook.find_event,
                self.source,
                self.events,
                self.match,
                received_after=since,
                after_seq=position,
            )
            if found is not None:
                await self._settle()
                yield TriggerEvent({"status": "success", "event": found.as_dict()})
                return
            if deadline is not None and datetime.now(timezone.utc) >= deadline:
                await self._settle()
                yield TriggerEvent({"status": "timeout"})
                return
            await asyncio.sleep(self.poll_interval)
