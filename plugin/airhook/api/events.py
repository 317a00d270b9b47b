"""``/events``: recorded inbound events, one in detail, and re-dispatch to their assets.

Thin: each route checks who asks (``auth``), hands its input to
:class:`~airhook.manage.events.EventService` and returns the view's JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from airhook.api.auth import Reader, Writer
from airhook.api.models import Redispatch
from airhook.api.params import ReceivedDep, ServicesDep, WindowDep

__all__ = ["router"]

router = APIRouter(prefix="/events", tags=["events"])

Text = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("")
def list_events(
    user: Reader,
    services: ServicesDep,
    period: ReceivedDep,
    window: WindowDep,
    source: Text = None,
    event: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="* matches any run of characters"),
    ] = None,
    kind: Text = None,
    dispatched: Annotated[
        bool | None, Query(description="sent to their assets, or not yet")
    ] = None,
) -> Any:
    """Recorded events, newest first."""
    page = services.events().list(
        source=source,
        event=event,
        kind=kind,
        since=period.since,
        until=period.until,
        dispatched=dispatched,
        limit=window.limit,
        offset=window.offset,
    )
    return page.as_dict()


@router.post("/redispatch")
def redispatch_events(body: Redispatch, user: Writer, services: ServicesDep) -> Any:
    """Send these events to their assets again, once each: a paused or newly deployed DAG gets
    its run."""
    return services.events().redispatch(body.ids)


@router.get("/{event_id}")
def get_event(event_id: str, user: Reader, services: ServicesDep) -> Any:
    """One event: payload, headers kept, asset events and the DAG runs they started."""
    return services.events().get(event_id).as_dict()
