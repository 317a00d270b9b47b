"""``/deliveries``: outbound deliveries, one with every attempt, and replays.

Thin: each route checks who asks (``auth``), hands its input to
:class:`~airhook.manage.deliveries.DeliveryService` and returns the view's JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from airhook.api.auth import Reader, Writer
from airhook.api.models import Replay
from airhook.api.params import CreatedDep, ServicesDep, WindowDep
from airhook.store.outbox import STATUSES

__all__ = ["router"]

router = APIRouter(prefix="/deliveries", tags=["deliveries"])


@router.get("")
def list_deliveries(
    user: Reader,
    services: ServicesDep,
    period: CreatedDep,
    window: WindowDep,
    subscription: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: Annotated[
        list[str] | None, Query(description=f"repeatable; one of {', '.join(STATUSES)}")
    ] = None,
) -> Any:
    """Deliveries, newest first."""
    page = services.deliveries().list(
        subscription=subscription,
        statuses=status,
        since=period.since,
        until=period.until,
        limit=window.limit,
        offset=window.offset,
    )
    return page.as_dict()


#: Most deliveries a replay sends within its request; more are left to the background sender.
SENT_IN_REQUEST = 100


@router.post("/replay")
def replay_deliveries(body: Replay, user: Writer, services: ServicesDep) -> Any:
    """Send deliveries again, now: ``ids``, or a subscription's dead letters (``dead_only``) or
    undelivered ones in a time window; ``{"replayed": [ids], ...counts}``. Over 100 are made due
    and sent by the background sender (``"background": true``)."""
    return services.deliveries().replay(
        background_beyond=SENT_IN_REQUEST,
        ids=body.ids,
        subscription=body.subscription,
        since=body.since,
        until=body.until,
        dead_only=body.dead_only,
        include_delivered=body.include_delivered,
    )


@router.get("/{message_id}")
def get_delivery(message_id: str, user: Reader, services: ServicesDep) -> Any:
    """One delivery and every attempt (status, latency, redacted excerpt)."""
    return services.deliveries().get(message_id).as_dict()
