"""Wait in the triggerer until a delivery's next attempt is due, holding no worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airhook.core.errors import ConfigurationError

__all__ = ["WebhookDelayTrigger"]

#: The longest single sleep: the clock is read again after it, so a wait follows clock
#: corrections instead of oversleeping by however far the clock moved.
_MAX_SLEEP_SECONDS = 60.0


class WebhookDelayTrigger(BaseTrigger):
    """Fire at ``moment`` with ``{"status": "success", "moment": …, "state": state}``.

    Why not ``DateTimeTrigger``: it checks the clock once a second (a 0.2 s ``Retry-After`` waits
    a second) and fires with a bare datetime. And why the state rides in the event rather than
    in ``defer(kwargs=…)``: Airflow 3.3's ``dag.test()`` resumes a deferred task with the event
    alone and drops the deferral's kwargs (a scheduler-run task gets both).

    :param moment: ISO 8601 time, with a zone, at which to fire.
    :param state: JSON-serialisable values handed back to the task in the event.
    """

    def __init__(self, *, moment: str, state: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ConfigurationError("moment needs a time zone")
        self.moment = moment
        self.state = dict(state or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and every constructor argument."""
        return (
            "airhook.triggers.delay.WebhookDelayTrigger",
            {"moment": self.moment, "state": self.state},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep until ``moment``, then fire once."""
        due = datetime.fromisoformat(self.moment)
        while True:
            remaining = (due - datetime.now(timezone.utc)).total_seconds()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, _MAX_SLEEP_SECONDS))
        yield TriggerEvent({"status": "success", "moment": self.moment, "state": self.state})
