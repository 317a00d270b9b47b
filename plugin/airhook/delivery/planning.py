"""Publication planning: events validated, subscriptions matched, bodies rendered; nothing sent.

A plan is the list of outbox rows a publication adds, one per (subscription, event), keyed by
``message_id(subscription, event key)``. Why that id: the same events published again (a task
retry, a re-run of the same DAG run) compute the same ids, the outbox already has them, and
nothing is sent twice. Each body is rendered once, here: retries and replays send these bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from airhook.core.catalog import Catalog, load_catalog
from airhook.core.delivery_rules import message_id
from airhook.core.errors import PayloadError
from airhook.core.subscription import Subscription
from airhook.delivery.events import Event
from airhook.store.outbox import NewDelivery

__all__ = ["Planner"]


@functools.cache
def _template_functions() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``renderer_for`` and ``template_context``, imported once (not once per body)."""
    from airhook.core.rendering import renderer_for, template_context

    return renderer_for, template_context


class Planner:
    """Turns events into the deliveries they make.

    :param catalog: the event catalog used to validate events that name a platform; default
        the shipped one, loaded on first use.
    :param render_timeout: seconds one body template may take to render.
    """

    def __init__(self, catalog: Catalog | None, render_timeout: float) -> None:
        self._catalog = catalog
        self._kinds: dict[tuple[str, str], str | None] = {}
        self.render_timeout = render_timeout

    @property
    def catalog(self) -> Catalog:
        """The event catalog."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    def plan(
        self,
        events: Sequence[Event],
        load_subscriptions: Callable[[], Sequence[Subscription]],
        *,
        publication: str | None = None,
        subscriptions: Sequence[str] | None = None,
    ) -> list[NewDelivery]:
        """Validate every event, match subscriptions, render bodies; store and send nothing.

        Raises :class:`~airhook.core.errors.PayloadError` for an invalid event and
        :class:`~airhook.core.errors.TemplateRenderError` for a body template that fails, before any
        delivery exists. ``load_subscriptions`` is called once every event is valid.
        """
        chatbots = [self.validate(event) for event in events]
        candidates = list(load_subscriptions())
        if subscriptions is not None:
            wanted = set(subscriptions)
            unknown = wanted - {s.name for s in candidates}
            if unknown:
                raise ValueError(f"no subscriptions named {sorted(unknown)}")
            candidates = [s for s in candidates if s.name in wanted]
        # Inactive ones (never switched on) are skipped; disabled ones keep their events.
        candidates = [s for s in candidates if s.state != "inactive"]
        new: list[NewDelivery] = []
        for event, chatbot_id in zip(events, chatbots, strict=True):
            for subscription in candidates:
                if not subscription.accepts(event.name, chatbot_id):
                    continue
                mid = message_id(subscription.name, event.key)
                new.append(
                    NewDelivery(
                        message_id=mid,
                        subscription=subscription.name,
                        event=event.name,
                        platform=event.platform,
                        publication=publication,
                        body=self.body(subscription, event, mid, chatbot_id),
                        status="pending" if subscription.active else "paused",
                    )
                )
        return new

    def validate(self, event: Event) -> str | None:
        """Check ``event``; return the chatbot it is about, if any."""
        if not isinstance(event.name, str) or not event.name:
            raise PayloadError("an event needs a name")
        if not isinstance(event.key, str) or not event.key:
            raise PayloadError(f"event {event.name!r} needs a key")
        chatbot_id = event.chatbot_id
        if event.platform is not None:
            self.catalog.event(event.platform, event.name).validate(event.payload)
            chatbot_field = self.catalog.platform(event.platform).chatbot_field
            if chatbot_id is None and chatbot_field and isinstance(event.payload, dict):
                found = event.payload.get(chatbot_field)
                chatbot_id = found if isinstance(found, str) else None
        elif chatbot_id is None and isinstance(event.payload, dict):
            found = event.payload.get("chatbotId")  # RKT's spelling, the one chatbot platform
            chatbot_id = found if isinstance(found, str) else None
        try:
            orjson.dumps(event.payload)
        except TypeError as exc:
            raise PayloadError(f"event {event.name!r} is not JSON-serialisable: {exc}") from None
        return chatbot_id

    def _kind(self, platform: str, name: str) -> str | None:
        # Looked up once per event type: a publication of thousands asks for the same few.
        key = (platform, name)
        if key not in self._kinds:
            self._kinds[key] = self.catalog.event(platform, name).kind
        return self._kinds[key]

    def body(
        self, subscription: Subscription, event: Event, mid: str, chatbot_id: str | None
    ) -> str:
        """The body's text, rendered once per delivery (retries and replays send these bytes)."""
        if subscription.body_template is None:
            return orjson.dumps(event.payload).decode("utf-8")
        renderer_for, template_context = _template_functions()
        kind = self._kind(event.platform, event.name) if event.platform else None
        extra: dict[str, Any] = {
            "payload": event.payload,
            "message_id": mid,
            "subscription": subscription.name,
        }
        if chatbot_id is not None:
            extra["chatbot_id"] = chatbot_id
        context = template_context(
            event=event.payload if isinstance(event.payload, Mapping) else None,
            event_name=event.name,
            kind=kind,
            platform=event.platform,
            **extra,
        )
        rendered = renderer_for(render_timeout_seconds=self.render_timeout).render_json(
            subscription.body_template,
            context,
            name=f"body template of subscription {subscription.name}",
        )
        return orjson.dumps(rendered).decode("utf-8")
