"""A signed sample delivery for a source: what its platform would send, proven as it would.

For a source's "test": the catalog's sample of an event, made unique (a fresh delivery id and
timestamp, so the receiver records it rather than answering "duplicate"), aimed at the source's
chatbot if it filters on one, and signed with the source's own secret by its own scheme (plus its
bearer token or basic credentials, if it takes those). The receiver then checks it exactly as it
checks the platform's deliveries.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airhook.core.catalog import Catalog
from airhook.core.errors import ConfigurationError, UnknownEventError
from airhook.core.profiles import get_profile
from airhook.core.source import Source

__all__ = ["SampleDelivery", "signed_sample"]

#: The event a generic profile's sample names when none is asked for.
GENERIC_EVENT = "airhook.test"


@dataclass(frozen=True)
class SampleDelivery:
    """One request to a source's receiver URL: the event it carries, its headers and body."""

    event: str
    kind: str | None
    headers: dict[str, str]
    body: bytes


def _now_text(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _payload(source: Source, catalog: Catalog, event: str | None, now: float) -> tuple[Any, str]:
    """The sample payload and its kind (``None`` for the generic profiles)."""
    profile = get_profile(
        source.profile, catalog, event_field=source.scheme_options.get("event_field")
    )
    delivery_id = f"test_{uuid.uuid4().hex}"
    if profile.platform is None:
        name = event or GENERIC_EVENT
        if profile.name == "standard":
            return {"type": name, "timestamp": _now_text(now), "data": {}}, name
        return {profile.event_field: name, "id": delivery_id}, name
    platform = catalog.platform(profile.platform)
    if event is None:
        event = next(
            (e.name for e in catalog.events(platform.name) if source.accepts(e.name, None)),
            next(iter(catalog.events(platform.name))).name,
        )
    try:
        payload = catalog.event(platform.name, event).sample
    except UnknownEventError:
        raise ConfigurationError(f"{platform.name} has no event {event!r}", field="event") from None
    if platform.id_field:
        payload[platform.id_field] = delivery_id
    else:
        # No delivery id in this envelope: the receiver tells duplicates by the body, which
        # this field makes unique (the schemas allow fields they do not name).
        payload["airhook_test_id"] = delivery_id
    if platform.timestamp_field:
        payload[platform.timestamp_field] = _now_text(now)
    if platform.chatbot_field and source.chatbot_ids:
        payload[platform.chatbot_field] = source.chatbot_ids[0]
    return payload, event


def signed_sample(source: Source, catalog: Catalog, event: str | None = None) -> SampleDelivery:
    """A sample delivery of ``event`` (default: the first catalog event the source takes),
    signed and authenticated as the source requires."""
    now = time.time()
    payload, name = _payload(source, catalog, event, now)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if source.scheme is not None:
        headers.update(
            source.signing_scheme().sign(
                body,
                source.verifying_secrets()[:1],
                now=now,
                message_id=f"msg_test_{uuid.uuid4().hex}",
            )
        )
    if source.bearer_tokens:
        headers["Authorization"] = "Bearer " + source.bearer_tokens[0].reveal()
    elif source.basic_credentials:
        credentials = source.basic_credentials[0]
        pair = f"{credentials.username}:{credentials.password.reveal()}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    profile = get_profile(source.profile, catalog)
    kind = catalog.event(profile.platform, name).kind if profile.platform else None
    return SampleDelivery(event=name, kind=kind, headers=headers, body=body)
