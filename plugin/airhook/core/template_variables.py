"""The variables every outbound template may rely on, and the one way moments are written. Pure.

- :data:`STANDARD_VARIABLES` and :func:`template_context`: what a template can use without
  tripping ``StrictUndefined`` (``None`` when unknown), read from a platform's envelope when the
  caller does not say.
- :func:`rfc3339`: a moment as RFC 3339 in UTC with ``Z``; the context's ``now`` and
  ``timestamp`` and the ``iso8601`` filter (:mod:`airhook.core.template_filters`) write moments
  the same way with it.

Apart from the renderer (:mod:`airhook.core.rendering`, which re-exports both public names)
because building a context needs no Jinja at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

__all__ = ["STANDARD_VARIABLES", "rfc3339", "template_context"]

#: The variables :func:`template_context` always defines (``None`` when unknown).
STANDARD_VARIABLES: tuple[str, ...] = (
    "event",
    "data",
    "event_name",
    "event_id",
    "kind",
    "platform",
    "source",
    "timestamp",
    "now",
)


def rfc3339(moment: dt.datetime) -> str:
    """Format a moment in UTC with ``Z``; milliseconds only when there are any."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    moment = moment.astimezone(dt.timezone.utc)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def template_context(
    *,
    event: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    event_name: str | None = None,
    event_id: str | None = None,
    kind: str | None = None,
    platform: str | None = None,
    source: str | None = None,
    timestamp: str | dt.datetime | None = None,
    now: str | dt.datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the variables every template may rely on, plus template-specific extras.

    Every name in :data:`STANDARD_VARIABLES` is defined (``None`` when unknown), so a template
    can test ``platform`` or write ``event_id or …`` without tripping ``StrictUndefined``; an
    extra (``chatbot_id``, ``title``…) exists only when given, so a template that needs one fails
    naming it. What is not given is read from ``event`` where every platform's envelope keeps it:
    the name in ``event``/``event_type``/``type``, the id in ``id``/``event_id``, the time in
    ``timestamp``/``created_at``, the body in ``data``.

    :param event: the full event payload (an envelope as a platform sends it), if there is one.
    :param data: the event's body; defaults to ``event["data"]``, else ``{}``.
    :param event_name: the event's name as its platform spells it (``lead.captured``).
    :param event_id: the delivery or event id.
    :param kind: the canonical kind (``lead.captured``, ``conversation.started``…).
    :param platform: the platform profile (``rkt``, ``caleida``, ``eev``, ``ccai``, ``standard``).
    :param source: the airhook source the event arrived through, or the sender's name.
    :param timestamp: when the event happened; defaults to the envelope's time, else ``now``.
    :param now: the clock, passed in (tests, replays); defaults to the current UTC time.
    :param extra: template-specific variables, documented in each template's header.
    """
    envelope: dict[str, Any] = dict(event) if event is not None else {}

    def first(*keys: str) -> Any:
        for key in keys:
            value = envelope.get(key)
            if value is not None:
                return value
        return None

    if now is None:
        now = dt.datetime.now(dt.timezone.utc)
    now_text = rfc3339(now) if isinstance(now, dt.datetime) else now
    if data is None:
        body = envelope.get("data")
        data = body if isinstance(body, Mapping) else {}
    if timestamp is None:
        timestamp = first("timestamp", "created_at")
    context: dict[str, Any] = {
        "event": envelope,
        "data": data,
        "event_name": event_name
        if event_name is not None
        else first("event", "event_type", "type"),
        "event_id": event_id if event_id is not None else first("id", "event_id"),
        "kind": kind,
        "platform": platform,
        "source": source,
        "timestamp": rfc3339(timestamp) if isinstance(timestamp, dt.datetime) else timestamp,
        "now": now_text,
    }
    if context["timestamp"] is None:
        context["timestamp"] = now_text
    context.update(extra)
    return context
