"""Outbound subscriptions: list, show, create, edit, delete, their secrets, and a test send.

As for sources, a generated secret leaves this module once, in the answer to the action that
generated it; views show the URL's origin only and header names only (a URL or a header value
can be a credential). An edit replaces the changed fields of the stored subscription and saves it
under the same name, so its deliveries and their attempts stay its own. Switching it on or off
goes through the repository's ``enable`` and ``disable``, which also resume or pause its
deliveries (the delivery engine owns that state).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from airhook.core.catalog import EventType
from airhook.core.errors import (
    ConfigurationError,
    ConflictError,
    SubscriptionNotFoundError,
    UnknownPlatformError,
)
from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.subscription import SUBSCRIPTION_NAME_RE, Subscription
from airhook.delivery.events import Event, Summary
from airhook.manage import fields
from airhook.manage.views import AttemptView, Created, Page, SecretChange, SubscriptionView

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["EDITABLE", "SECRET_ACTIONS", "SubscriptionService"]

#: What an edit may change, in the order changes are applied (the scheme before its options).
EDITABLE = (
    "url",
    "events",
    "chatbot_ids",
    "method",
    "timeout",
    "headers",
    "body_template",
    "retry_schedule",
    "scheme",
    "scheme_options",
    "active",
)
#: What can be done to a subscription's pair of signing secrets.
SECRET_ACTIONS = ("generate-secondary", "rotate", "drop-secondary", "regenerate")
#: Catalog samples a new body template is tried with (it must render for one of them).
TEMPLATE_SAMPLES = 5
#: Seconds one trial render may take (a real delivery's limit is ``[airhook]
#: render_timeout_seconds``; a template that needs more than this for a sample is a mistake).
TEMPLATE_CHECK_SECONDS = 1.0
#: Longest delay of a retry schedule, in seconds (a week).
MAX_DELAY_SECONDS = 7 * 24 * 3600.0
#: Why a subscription was disabled, when an edit (not a failure) switched it off.
DISABLED_BY_EDIT = "disabled in the management API"


class SubscriptionService:
    """Outbound subscriptions, as the CLI, the API and the page manage them."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._engine = services.engine
        self._repository = services.engine.subscriptions

    # --- reading -------------------------------------------------------------------------------

    def view(self, subscription: Subscription) -> SubscriptionView:
        """The subscription as shown, with its deliveries per status."""
        counts, _ = self._engine.outbox.counts(subscription=subscription.name)
        summary = Summary.of(counts, None)
        return SubscriptionView(
            subscription,
            {
                "delivered": summary.delivered,
                "failed": summary.failed,
                "dead": summary.dead,
                "pending": summary.pending,
                "paused": summary.paused,
            },
        )

    def list(self, *, limit: int = 50, offset: int = 0) -> Page[SubscriptionView]:
        """Every subscription, newest first, a page at a time."""
        return Page.newest_first(self._repository.all(), self.view, limit=limit, offset=offset)

    def get_subscription(self, name: str) -> Subscription:
        """The stored subscription called ``name`` (secrets included: for this layer)."""
        if not isinstance(name, str) or not SUBSCRIPTION_NAME_RE.fullmatch(name):
            raise SubscriptionNotFoundError(str(name)[:100])
        return self._repository.get(name)

    def get(self, name: str) -> SubscriptionView:
        """One subscription."""
        return self.view(self.get_subscription(name))

    # --- changing ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        url: str,
        *,
        events: Any = ("*",),
        scheme: str | None = "standard",
        allow_unknown_events: bool = False,
        secret: str | None = None,
        secondary_secret: str | None = None,
        **settings: Any,
    ) -> Created[SubscriptionView]:
        """Create a subscription, signed with a generated secret (returned once) unless
        ``scheme`` is ``None`` or ``secret`` is given; ``secondary_secret``: a second secret
        deliveries are signed with too (a receiver moving to a new one).

        :param settings: any other of :data:`EDITABLE` (``chatbot_ids``, ``method``,
            ``timeout``, ``headers``, ``body_template``, ``retry_schedule``,
            ``scheme_options``, ``active``).
        :param allow_unknown_events: accept patterns no catalog event matches (events a DAG
            publishes under names of its own); the API and the page do not.
        """
        unknown = sorted(set(settings) - set(EDITABLE))
        if unknown:
            raise ConfigurationError(f"unknown setting {unknown[0]!r}", field=unknown[0])
        with fields.field("name"):
            if not isinstance(name, str) or not SUBSCRIPTION_NAME_RE.fullmatch(name):
                raise ConfigurationError(
                    "a subscription name is 1-100 lower-case letters, digits, '-' or '_', "
                    "starting with a letter or digit"
                )
        probe = Subscription(name=name, url="https://subscription.invalid/", scheme=None)
        changes = {"url": url, "events": events, **settings, "scheme": scheme}
        generated = None
        if scheme is not None:
            with fields.field("secret"):
                primary = Secret(secret) if secret is not None else generate_secret()
            generated = primary if secret is None else None
            with fields.field("secondary_secret"):
                second = Secret(secondary_secret) if secondary_secret is not None else None
            changes["secrets"] = SecretPair(primary, second)
        elif secret is not None or secondary_secret is not None:
            raise ConfigurationError("an unsigned subscription takes no secret", field="secret")
        subscription = self._build(probe, changes, allow_unknown_events=allow_unknown_events)
        created = self._repository.create(subscription)
        return Created(self.view(created), generated.reveal() if generated else None)

    def update(
        self,
        name: str,
        changes: Mapping[str, Any],
        *,
        allow_unknown_events: bool = False,
        reason: str = DISABLED_BY_EDIT,
    ) -> SubscriptionView:
        """Change some of :data:`EDITABLE`; ``url`` and ``headers`` are replaced whole.

        ``active``: ``True`` enables it (its kept deliveries go out now), ``False`` disables
        it with ``reason`` (its deliveries wait, paused). A subscription that signs nothing
        cannot start signing here: its secret would have to be shown, so create it again.
        """
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise ConfigurationError(
                f"a subscription's {unknown[0]} cannot be changed "
                f"(editable: {', '.join(EDITABLE)})",
                field=unknown[0],
            )
        current = self.get_subscription(name)
        changes = dict(changes)
        active = changes.pop("active", None)
        if active is not None and not isinstance(active, bool):
            raise ConfigurationError("active is true or false", field="active")
        if "scheme" in changes:
            if changes["scheme"] is None:
                changes["secrets"] = None
            elif current.secrets is None:
                raise ConfigurationError(
                    "an unsigned subscription cannot start signing by an edit (its new secret "
                    "would have to be shown): create it again with a scheme",
                    field="scheme",
                )
            if changes["scheme"] != current.scheme and "scheme_options" not in changes:
                changes["scheme_options"] = {}  # another scheme's options make no sense
        changed = self._build(current, changes, allow_unknown_events=allow_unknown_events)
        saved = self._repository.save(changed) if changed != current else current
        if active is True and saved.state != "active":
            saved = self._repository.enable(name)
            if self._engine.summary(subscription=name).pending:
                self._engine.deliver(subscription=name)
        elif active is False and saved.active:
            saved = self._repository.disable(name, reason)
        return self.view(saved)

    def delete(self, name: str) -> None:
        """Delete a subscription with its deliveries and their attempts."""
        self._repository.delete(self.get_subscription(name).name)

    def change_secrets(
        self,
        name: str,
        action: Literal["generate-secondary", "rotate", "drop-secondary", "regenerate"],
    ) -> SecretChange[SubscriptionView]:
        """Act on the signing secrets as for sources; a generated secret is returned once.

        Deliveries are signed with both secrets while there are two (schemes that carry one
        signature use the primary).
        """
        if action not in SECRET_ACTIONS:
            raise ConfigurationError(
                f"action is one of {', '.join(SECRET_ACTIONS)}", field="action"
            )
        subscription = self.get_subscription(name)
        if subscription.secrets is None:
            raise ConflictError("subscription", name, "it signs nothing: it has no secret")
        old_primary = subscription.secrets.primary
        shown: Secret | None = None
        with fields.field("action"):
            if action == "generate-secondary":
                subscription = subscription.with_new_secondary()
                shown = subscription.secrets.secondary if subscription.secrets else None
            elif action == "rotate":
                subscription = subscription.rotated()
            elif action == "drop-secondary":
                subscription = subscription.without_secondary()
            else:
                shown = generate_secret()
                subscription = replace(subscription, secrets=SecretPair(shown, old_primary))
        saved = self._repository.save(subscription)
        return SecretChange(self.view(saved), shown.reveal() if shown is not None else None)

    # --- testing -------------------------------------------------------------------------------

    def sample(
        self, subscription: Subscription, event: str | None, platform: str | None
    ) -> EventType:
        """The catalog event a test sends: the one named, or the first the subscription takes."""
        catalog = self._services.catalog
        if platform is not None:
            try:
                catalog.platform(platform)
            except UnknownPlatformError as exc:
                raise ConfigurationError(str(exc), field="platform") from None
        if event is None:
            for candidate in catalog.events(platform):
                if subscription.accepts(candidate.name):
                    return candidate
            raise ConfigurationError(
                f"no catalog event matches {list(subscription.events)}: name one", field="event"
            )
        platforms = [e.platform for e in catalog.events(platform) if e.name == event]
        if not platforms:
            raise ConfigurationError(f"no platform has an event {event!r}"[:300], field="event")
        if len(platforms) > 1:
            raise ConfigurationError(
                f"{event!r} exists on {', '.join(platforms)}: name the platform",
                field="platform",
            )
        return catalog.event(platforms[0], event)

    def test(
        self, name: str, event: str | None = None, platform: str | None = None
    ) -> dict[str, Any]:
        """Send a catalog sample now, whatever the subscription's state; record nothing.

        :returns: the attempt (``outcome``, ``status_code``, ``latency_ms``, ``error``,
            ``response_excerpt``) with the ``event``, ``platform`` and ``message_id`` sent.
        """
        subscription = self.get_subscription(name)
        sample = self.sample(subscription, event, platform)
        attempt = self._engine.send_test(
            subscription, sample.sample, event=sample.name, platform=sample.platform
        )
        return {
            **AttemptView(attempt).as_dict(),
            "event": sample.name,
            "platform": sample.platform,
            "message_id": attempt.message_id,
        }

    # --- checks --------------------------------------------------------------------------------

    def _build(
        self, base: Subscription, changes: Mapping[str, Any], *, allow_unknown_events: bool
    ) -> Subscription:
        """``base`` with ``changes`` applied a field at a time, each checked and named."""
        scheme = changes.get("scheme", base.scheme)
        checked = {
            key: self._checked(key, value, scheme, allow_unknown_events)
            for key, value in changes.items()
        }
        order = [*EDITABLE[:-3], "scheme", "secrets", "scheme_options", "active"]
        if "scheme" in checked and "secrets" in checked:
            # A scheme and its secret arrive together: neither is valid alone.
            with fields.field("scheme"):
                base = replace(base, scheme=checked.pop("scheme"), secrets=checked.pop("secrets"))
        built = fields.apply(base, checked, order)
        if built.body_template is not None and ("body_template" in changes or "events" in changes):
            self._check_template(built)
        return built

    def _checked(self, key: str, value: Any, scheme: Any, allow_unknown_events: bool) -> Any:
        """One change in the model's type, checked beyond what :class:`Subscription` checks."""
        if key == "url":
            if not isinstance(value, str):
                raise ConfigurationError("url is a string", field="url")
            return value
        if key == "events":
            patterns = fields.strings(value, "events", allow_empty=False)
            if not allow_unknown_events:
                fields.check_event_patterns(patterns, self._services.catalog, platform=None)
            return patterns
        if key == "chatbot_ids":
            return fields.strings(value, "chatbot_ids")
        if key == "method":
            if not isinstance(value, str):
                raise ConfigurationError("method is POST, PUT or PATCH", field="method")
            return value.upper()
        if key == "timeout":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ConfigurationError("timeout is a number of seconds, or null", field="timeout")
            return float(value) if value is not None else None
        if key == "headers":
            if not isinstance(value, Mapping):
                raise ConfigurationError(
                    "headers is an object of names and values", field="headers"
                )
            headers = {}
            for header, text in value.items():
                if not isinstance(text, str) or not text.strip():
                    # The name only: the value may be a token.
                    raise ConfigurationError(
                        f"header {str(header)[:128]!r} needs a non-empty text value",
                        field="headers",
                    )
                headers[str(header)] = Secret(text.strip())
            return headers
        if key == "body_template":
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(
                    "body_template is a template name or source, or null", field="body_template"
                )
            return value
        if key == "retry_schedule":
            if (
                isinstance(value, str)
                or not isinstance(value, list | tuple)
                or any(isinstance(d, bool) or not isinstance(d, int | float) for d in value)
            ):
                raise ConfigurationError(
                    "retry_schedule is a list of delays in seconds", field="retry_schedule"
                )
            if any(not 0 <= d <= MAX_DELAY_SECONDS for d in value):
                raise ConfigurationError(
                    f"each delay is from 0 to {MAX_DELAY_SECONDS:g} seconds",
                    field="retry_schedule",
                )
            return tuple(float(d) for d in value)
        if key == "scheme":
            if value is not None and not isinstance(value, str):
                raise ConfigurationError("scheme is a scheme name, or null", field="scheme")
            return value
        if key == "scheme_options":
            # Checked against the scheme it goes with (changed in the same edit, or kept).
            return fields.check_scheme_options(scheme if isinstance(scheme, str) else None, value)
        if key == "active" and not isinstance(value, bool):
            raise ConfigurationError("active is true or false", field="active")
        return value

    def _check_template(self, subscription: Subscription) -> None:
        """Refuse a body template that renders JSON for none of the events it would get."""
        from airhook.delivery.planning import Planner

        planner = Planner(self._services.catalog, TEMPLATE_CHECK_SECONDS)
        samples: list[EventType | None] = list(
            itertools.islice(
                (e for e in self._services.catalog.events() if subscription.accepts(e.name)),
                TEMPLATE_SAMPLES,
            )
        ) or [None]

        def render(sample: EventType | None) -> object:
            event = (
                Event(sample.name, sample.sample, "check", platform=sample.platform)
                if sample is not None
                else Event("airhook.test", {}, "check")
            )
            return planner.body(subscription, event, "msg_check", None)

        fields.check_template(subscription.body_template, samples, render)
