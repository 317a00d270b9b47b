"""Platform profiles: what a source of each kind of sender looks like. Pure, no Airflow.

A profile ties a sender to a signing scheme (default, overridable per source), to the catalog
platform whose schemas validate its events (none for the generic profiles), and to the envelope
fields that carry the event name, the delivery id and the chatbot id.

=========  ==========  ==========================  ============================================
profile    scheme      event name in               schemas
=========  ==========  ==========================  ============================================
caleida    token       ``event``                   catalog platform ``caleida``
ccai       ccai        ``event_type``              catalog platform ``ccai``
eev        hmac        ``event``                   catalog platform ``eev``
rkt        rkt         ``event``                   catalog platform ``rkt``
standard   standard    ``type``                    none: any JSON object with a ``type``
hmac       hmac        ``event`` (configurable)    none: any JSON object naming an event
=========  ==========  ==========================  ============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airhook.core.catalog import Catalog
from airhook.core.errors import ConfigurationError, UnknownEventError

__all__ = ["PROFILES", "EventFacts", "Profile", "get_profile"]


@dataclass(frozen=True)
class EventFacts:
    """What the receiver needs from a parsed, not yet validated delivery."""

    name: str
    delivery_id: str | None
    chatbot_id: str | None


@dataclass(frozen=True)
class Profile:
    """How deliveries of one kind of sender are read."""

    name: str
    scheme: str
    platform: str | None
    event_field: str
    id_field: str | None
    chatbot_field: str | None

    def facts(self, payload: Mapping[str, Any]) -> EventFacts:
        """Return the event name, delivery id and chatbot id a payload's envelope carries."""
        name = payload.get(self.event_field)
        # Printable only: a control character (a NUL, say) is no event name, and PostgreSQL
        # could not store it.
        if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
            raise UnknownEventError(self.name, name)
        delivery_id = payload.get(self.id_field) if self.id_field else None
        chatbot_id = payload.get(self.chatbot_field) if self.chatbot_field else None
        return EventFacts(
            name=name,
            delivery_id=str(delivery_id) if isinstance(delivery_id, str | int) else None,
            chatbot_id=str(chatbot_id) if isinstance(chatbot_id, str | int) else None,
        )


def _from_catalog(catalog: Catalog, name: str) -> Profile:
    platform = catalog.platform(name)
    return Profile(
        name=name,
        scheme=platform.signing,
        platform=name,
        event_field=platform.event_field,
        id_field=platform.id_field,
        chatbot_field=platform.chatbot_field,
    )


def get_profile(name: str, catalog: Catalog, *, event_field: str | None = None) -> Profile:
    """Return the profile called ``name``; ``event_field`` overrides the generic ``hmac`` one."""
    if name in catalog.platforms:
        return _from_catalog(catalog, name)
    if name == "standard":
        # Standard Webhooks' recommended body is {type, timestamp, data}; the id is a header.
        return Profile("standard", "standard", None, "type", None, None)
    if name == "hmac":
        return Profile("hmac", "hmac", None, event_field or "event", "id", None)
    raise ConfigurationError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")


PROFILES = ("caleida", "ccai", "eev", "rkt", "standard", "hmac")
