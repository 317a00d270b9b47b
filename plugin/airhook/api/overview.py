"""``/whoami``, ``/catalog`` and ``/activity``: what the page needs before and beside the lists.

Thin: each route checks who asks (``auth``) and returns the services' JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from airhook.api.auth import Reader, can_write
from airhook.api.params import ServicesDep
from airhook.manage.activity import MAX_HOURS

__all__ = ["router"]

router = APIRouter(tags=["overview"])


@router.get("/whoami")
def whoami(user: Reader) -> Any:
    """The user, and whether they may change anything (the page hides what they may not do)."""
    return {"user": user.get_name(), "can_write": can_write(user)}


@router.get("/catalog")
def catalog(user: Reader, services: ServicesDep) -> Any:
    """Platforms with their events (grouped) and setup steps, and the signing schemes."""
    return services.catalog_info().as_dict()


@router.get("/activity")
def activity(
    user: Reader,
    services: ServicesDep,
    hours: Annotated[
        int, Query(ge=1, le=MAX_HOURS, description="hours back, one bucket each")
    ] = 24,
) -> Any:
    """Events received, deliveries delivered and failed, per hour; rejections by reason (this
    API server's, since it started)."""
    return services.activity().counts(hours)
