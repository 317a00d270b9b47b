"""Recorded inbound events: a filtered page of them, one in detail, and re-dispatch.

The detail adds the payload and what the event became in Airflow: its asset events and the DAG
runs they started, read from Airflow's metadata DB by the callable the container was given (the
API server has one; elsewhere the list is empty). Re-dispatch sends chosen events to their assets
again through the dispatcher's usual exactly-once path, so a DAG that was paused, or deployed
since, gets its run; each request re-dispatches each event once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airhook.core.catalog import EventPattern
from airhook.core.errors import ConfigurationError, NotFoundError
from airhook.core.source import SOURCE_NAME_RE
from airhook.manage import fields
from airhook.manage.views import EventView, Page

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["REDISPATCH_BATCH", "EventService"]

#: Longest event id (``evt_`` and a random part; the column holds 40).
_MAX_ID = 40
#: Events a re-dispatch with progress marks per step.
REDISPATCH_BATCH = 100


class EventService:
    """Recorded events, as the CLI, the API and the page see them."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._inbox = services.inbox

    def list(
        self,
        *,
        source: str | None = None,
        event: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        dispatched: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[EventView]:
        """A page of events, newest first.

        :param event: an event-name pattern, ``*`` matching any run of characters.
        :param since: received at or after; ``until``: before.
        :param dispatched: only those sent to their assets (``True``), or still waiting.
        """
        if source is not None and not SOURCE_NAME_RE.fullmatch(source):
            raise ConfigurationError("no source has that name", field="source")
        if event is not None:
            with fields.field("event"):
                EventPattern(event)
        if kind is not None and (len(kind) > 64 or not kind.isprintable()):
            raise ConfigurationError("kind is a canonical kind name", field="kind")
        found, total = self._inbox.list(
            source=source,
            event_pattern=event,
            kind=kind,
            since=fields.utc(since, "since"),
            until=fields.utc(until, "until"),
            dispatched=dispatched,
            limit=limit,
            offset=offset,
        )
        return Page([EventView(e) for e in found], total, limit, offset)

    def get(self, event_id: str) -> EventView:
        """One event with its payload, asset events and the DAG runs they started."""
        found = None
        if isinstance(event_id, str) and 0 < len(event_id) <= _MAX_ID and event_id.isprintable():
            found = self._inbox.get(event_id)
        if found is None:
            raise NotFoundError("event", str(event_id)[:_MAX_ID])
        reader = self._services.asset_events_of
        asset_events = reader(found.id, found.received_at) if reader is not None else []
        return EventView(found, detail=True, asset_events=asset_events)

    def redispatch(
        self,
        ids: Any,
        *,
        progress: Callable[[int, int], None] | None = None,
        batch: int = REDISPATCH_BATCH,
    ) -> dict[str, int]:
        """Send these events to their assets again, once; ``{"redispatched": n}``.

        An event not dispatched yet is about to go anyway and is not counted; an unknown id is
        a 404 before anything changes.

        :param progress: called with ``(done, total)`` after each ``batch`` of events (the
            CLI's progress bar); without it, all are marked in one go.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError("batch is a positive number of events", field="batch")
        chosen = fields.check_ids(ids)
        for event_id in chosen:
            if len(event_id) > _MAX_ID or self._inbox.get(event_id) is None:
                raise NotFoundError("event", event_id[:_MAX_ID])
        if progress is None:
            return {"redispatched": self._inbox.redispatch(chosen)}
        count = 0
        progress(0, len(chosen))
        for start in range(0, len(chosen), batch):
            count += self._inbox.redispatch(chosen[start : start + batch])
            progress(min(start + batch, len(chosen)), len(chosen))
        return {"redispatched": count}
