"""``/subscriptions``: outbound subscriptions, their secrets, and a test send.

Thin: each route checks who asks (``auth``), hands its input to
:class:`~airhook.manage.subscriptions.SubscriptionService` and returns the view's JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from airhook.api.auth import Reader, Writer
from airhook.api.models import SecretAction, SubscriptionCreate, SubscriptionPatch, SubscriptionTest
from airhook.api.params import ServicesDep, WindowDep

__all__ = ["router"]

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])


@router.get("")
def list_subscriptions(user: Reader, services: ServicesDep, window: WindowDep) -> Any:
    """Every subscription, newest first, with its state and deliveries per status."""
    return services.subscriptions().list(limit=window.limit, offset=window.offset).as_dict()


@router.post("", status_code=status.HTTP_201_CREATED)
def create_subscription(body: SubscriptionCreate, user: Writer, services: ServicesDep) -> Any:
    """Create a subscription; its generated secret is in this answer and never again."""
    settings = body.model_dump(exclude_none=True)
    settings.setdefault("scheme", None)  # null: unsigned
    created = services.subscriptions().create(**settings)
    return {"subscription": created.view.as_dict(), "secret": created.secret}


@router.get("/{name}")
def get_subscription(name: str, user: Reader, services: ServicesDep) -> Any:
    """One subscription."""
    return services.subscriptions().get(name).as_dict()


@router.patch("/{name}")
def update_subscription(
    name: str, body: SubscriptionPatch, user: Writer, services: ServicesDep
) -> Any:
    """Change some settings; ``active`` true enables it (kept deliveries go out now), false
    disables it (its deliveries wait)."""
    changes = body.changes()
    reason = f"disabled by {user.get_name()} in the management API"
    return services.subscriptions().update(name, changes, reason=reason).as_dict()


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(name: str, user: Writer, services: ServicesDep) -> Response:
    """Delete a subscription with its deliveries and their attempts."""
    services.subscriptions().delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/secrets")
def change_subscription_secrets(
    name: str, body: SecretAction, user: Writer, services: ServicesDep
) -> Any:
    """Generate a secondary, rotate, drop the secondary or regenerate; a generated secret is in
    this answer and never again."""
    change = services.subscriptions().change_secrets(name, body.action)
    return {"subscription": change.view.as_dict(), "secret": change.secret}


@router.post("/{name}/test")
def test_subscription(
    name: str, body: SubscriptionTest, user: Writer, services: ServicesDep
) -> Any:
    """Send a catalog sample of an event now (whatever the state), record nothing; the attempt."""
    return services.subscriptions().test(name, body.event, body.platform)
