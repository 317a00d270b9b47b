"""The JSON shapes the CLI, the REST API and the page show: one place, so the three agree.

Each view is built from what the store hands back and turned into a JSON-ready dict by
``as_dict``. None of them carries a secret: a view says only whether a secret exists
(``has_secondary_secret``, ``bearer_tokens``: a count), a subscription's URL is shown as its
origin followed by ``/…`` (a Slack or Zapier URL is itself a credential), and header values are
left out (only their names). A generated secret is handed out once, beside the view, by the
service that generated it (:class:`Created`, :class:`SecretChange`), never by a view.

Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from airhook.core.source import Source
from airhook.core.subscription import Subscription
from airhook.store.inbox import InboxEvent
from airhook.store.outbox import AttemptRecord, Delivery

__all__ = [
    "RECEIVER_PATH",
    "AttemptView",
    "Created",
    "DeliveryView",
    "EventView",
    "Page",
    "SecretChange",
    "SourceView",
    "SubscriptionView",
    "iso",
]

#: Where the receiver takes a source's deliveries, below the API server's base URL.
RECEIVER_PATH = "/airhook/webhooks/"

V = TypeVar("V")


class _Dated(Protocol):
    """A stored model with the time it was created (``None``: stored before it was recorded)."""

    @property
    def created_at(self) -> datetime | None: ...


D = TypeVar("D", bound=_Dated)


def iso(moment: datetime | None) -> str | None:
    """A time as ISO 8601 text (``None`` stays ``None``)."""
    return moment.isoformat() if moment is not None else None


def _json(value: Any) -> Any:
    """``as_dict`` of a view (or a list of them), anything else unchanged."""
    if isinstance(value, list):
        return [_json(item) for item in value]
    as_dict = getattr(value, "as_dict", None)
    return as_dict() if callable(as_dict) else value


@dataclass(frozen=True)
class Page(Generic[V]):
    """One page of a list, newest first: the items, how many match in all, and the window."""

    items: list[V]
    total: int
    limit: int
    offset: int

    @classmethod
    def newest_first(
        cls, models: Iterable[D], view: Callable[[D], V], *, limit: int, offset: int
    ) -> Page[V]:
        """The page of ``models`` from ``offset``, newest first (those without a creation time
        last), each shown by ``view``: the lists of sources and subscriptions, read whole."""
        found = sorted(models, key=lambda m: (m.created_at is not None, m.created_at), reverse=True)
        return cls([view(m) for m in found[offset : offset + limit]], len(found), limit, offset)

    def as_dict(self) -> dict[str, Any]:
        """``{"items", "total", "limit", "offset"}``."""
        return {
            "items": _json(self.items),
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class SourceView:
    """An inbound source as shown: settings, whether secrets exist, and what it received."""

    source: Source
    receiver_url: str
    events_received: int
    last_received_at: datetime | None

    @classmethod
    def receiver_url_of(cls, base_url: str, name: str) -> str:
        """The URL a platform posts this source's deliveries to."""
        return base_url.rstrip("/") + RECEIVER_PATH + name

    def as_dict(self) -> dict[str, Any]:
        """The contract's SourceView."""
        source = self.source
        return {
            "name": source.name,
            "profile": source.profile,
            "scheme": source.scheme,
            "scheme_options": dict(source.scheme_options),
            "events": list(source.events),
            "allow_ips": list(source.allow_ips),
            "chatbot_ids": list(source.chatbot_ids),
            "max_body_bytes": source.max_body_bytes,
            "active": source.active,
            "has_secondary_secret": bool(source.secrets and source.secrets.secondary),
            "bearer_tokens": len(source.bearer_tokens),
            "basic_users": [c.username for c in source.basic_credentials],
            "receiver_url": self.receiver_url,
            "created_at": iso(source.created_at),
            "updated_at": iso(source.updated_at),
            "events_received": self.events_received,
            "last_received_at": iso(self.last_received_at),
        }


@dataclass(frozen=True)
class SubscriptionView:
    """An outbound subscription as shown: no secret, no URL path, no header value.

    :param deliveries: its deliveries per status (``pending`` includes those being sent).
    """

    subscription: Subscription
    deliveries: Mapping[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The contract's SubscriptionView."""
        subscription = self.subscription
        return {
            "name": subscription.name,
            "url": subscription.origin + "/…",
            "events": list(subscription.events),
            "chatbot_ids": list(subscription.chatbot_ids),
            "scheme": subscription.scheme,
            "scheme_options": dict(subscription.scheme_options),
            "active": subscription.active,
            "state": subscription.state,
            "disabled_reason": subscription.disabled_reason,
            "disabled_at": iso(subscription.disabled_at),
            "consecutive_failures": subscription.consecutive_failures,
            "method": subscription.method,
            "timeout": subscription.timeout,
            "header_names": sorted(subscription.headers),
            "body_template": subscription.body_template,
            "retry_schedule": list(subscription.retry_schedule),
            "has_secondary_secret": bool(subscription.secrets and subscription.secrets.secondary),
            "created_at": iso(subscription.created_at),
            "updated_at": iso(subscription.updated_at),
            "deliveries": dict(self.deliveries),
        }


@dataclass(frozen=True)
class AttemptView:
    """One attempt at a delivery: outcome, status, latency and a redacted excerpt."""

    attempt: AttemptRecord

    def as_dict(self) -> dict[str, Any]:
        """The contract's AttemptView."""
        attempt = self.attempt
        return {
            "attempted_at": iso(attempt.attempted_at),
            "outcome": attempt.outcome,
            "status_code": attempt.status_code,
            "latency_ms": attempt.latency_ms,
            "error": attempt.error,
            "response_excerpt": attempt.response_excerpt,
        }


@dataclass(frozen=True)
class DeliveryView:
    """One delivery (its body left out), with every attempt when the detail was asked for."""

    delivery: Delivery
    attempts: Sequence[AttemptRecord] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The contract's DeliveryView (and ``attempt_log`` in the detail)."""
        delivery = self.delivery
        shown: dict[str, Any] = {
            "id": delivery.message_id,
            "subscription": delivery.subscription,
            "event": delivery.event,
            "platform": delivery.platform,
            "status": delivery.status,
            "attempts": delivery.attempts,
            # Only a pending delivery's is a next attempt; a claimed one's is when its claim ends.
            "next_attempt_at": iso(delivery.next_attempt_at)
            if delivery.status == "pending"
            else None,
            "created_at": iso(delivery.created_at),
            "updated_at": iso(delivery.updated_at),
            "finished_at": iso(delivery.finished_at),
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
        }
        if self.attempts is not None:
            shown["attempt_log"] = [AttemptView(a).as_dict() for a in self.attempts]
        return shown


@dataclass(frozen=True)
class EventView:
    """A recorded inbound event; the detail adds its payload, the headers kept of its request,
    and the asset events it became."""

    event: InboxEvent
    detail: bool = False
    asset_events: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The contract's EventView (and ``payload``, ``asset_events`` in the detail)."""
        event = self.event
        shown: dict[str, Any] = {
            "id": event.id,
            "source": event.source,
            "profile": event.profile,
            "event": event.event,
            "kind": event.kind,
            "received_at": iso(event.received_at),
            "dispatched_at": iso(event.dispatched_at),
            "dispatch_attempts": event.dispatch_attempts,
            "redispatches": event.redispatches,
        }
        if self.detail:
            shown["payload"] = event.payload()
            # Kept by the receiver without credentials or signatures; None: not kept.
            shown["headers"] = json.loads(event.headers) if event.headers else None
            shown["asset_events"] = [dict(a) for a in self.asset_events]
        return shown


@dataclass(frozen=True)
class Created(Generic[V]):
    """What creating a source or subscription returns: its view and its secret, shown this once.

    :param secret: the generated primary secret (``None`` for an unsigned subscription).
    :param setup: for a source, where to paste URL and secret in the sender's platform.
    """

    view: V
    secret: str | None
    setup: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SecretChange(Generic[V]):
    """What a secret action returns: the view, and the secret it generated (shown this once)."""

    view: V
    secret: str | None
